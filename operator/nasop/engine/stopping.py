"""When to stop: trials early (learning-curve rules) and the whole search (hypervolume stalled).

A percentile or threshold rule is one of Ax's own strategies on one metric. The Pareto rule
(`dominatedBy`) is nasop's: Ax 1.3's strategies judge one metric, so in an accuracy-vs-size
search they stop small models whose accuracy trails the big ones', which are the cheap end of
the front. It stops a trial only when enough other trials already beat it on every objective:
its learning curve at its latest epoch against theirs at the same epoch, the other objectives
(e.g. num_params, logged once) at their latest values. Rules are evaluated one by one and
combined here (`any` = union, `all` = intersection) so that the reason a user reads names
exactly the rules that fired, not Ax's multi-line diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ax.core.experiment import Experiment
from ax.early_stopping.strategies.base import BaseEarlyStoppingStrategy
from ax.early_stopping.strategies.percentile import PercentileEarlyStoppingStrategy
from ax.early_stopping.strategies.threshold import ThresholdEarlyStoppingStrategy

from nasop import spec
from nasop.engine import pareto

log = logging.getLogger(__name__)


def rule_strategy(rule: spec.StoppingRule) -> BaseEarlyStoppingStrategy:
    """One spec rule as the Ax strategy that implements it."""
    common: dict[str, Any] = {
        "metric_signatures": [rule.metric],
        "min_progression": rule.min_progression,
        "max_progression": rule.max_progression,
        "min_curves": rule.min_curves,
    }
    if rule.threshold is not None:
        return ThresholdEarlyStoppingStrategy(metric_threshold=rule.threshold, **common)
    return PercentileEarlyStoppingStrategy(percentile_threshold=rule.percentile or 50.0, **common)


def dominated_trials(
    rule: spec.StoppingRule,
    objectives: Sequence[spec.Objective],
    experiment: Experiment,
    running: Iterable[int],
) -> set[int]:
    """Running trials that at least `rule.dominated_by` other trials dominate at the same epoch.

    A point is (rule.metric at epoch k, every other objective's latest value), signed so that
    larger is better; trial j dominates trial t if it is at least as good everywhere and better
    somewhere. Judged at t's latest epoch k within [minProgression, maxProgression], once
    `minCurves` other trials have a complete point at epoch k.
    """
    need = rule.dominated_by or 1
    df = experiment.lookup_data().full_df
    if df.empty or "step" not in df.columns:
        return set()
    sign = {o.metric: -1.0 if o.minimize else 1.0 for o in objectives}
    others = [o.metric for o in objectives if o.metric != rule.metric]
    curve = df[df["metric_name"] == rule.metric]
    at = {
        (int(i), float(k)): float(v)
        for i, k, v in zip(curve["trial_index"], curve["step"], curve["mean"])
    }
    latest_step = curve.groupby("trial_index")["step"].max()
    rest: dict[int, dict[str, float]] = {}
    latest = (
        df[df["metric_name"].isin(others)]
        .sort_values("step")
        .groupby(["trial_index", "metric_name"])["mean"]
        .last()
    )
    for (i, m), v in latest.items():
        rest.setdefault(int(i), {})[str(m)] = sign[str(m)] * float(v)

    def point(i: int, k: float) -> tuple[float, ...] | None:
        if (i, k) not in at or len(rest.get(i, {})) < len(others):
            return None
        return (sign[rule.metric] * at[i, k], *(rest[i][m] for m in others))

    trials = [int(i) for i in latest_step.index]
    stop = set()
    for t in running:
        if t not in latest_step.index:
            continue
        k = float(latest_step[t])
        past_max = rule.max_progression is not None and k > rule.max_progression
        if k < rule.min_progression or past_max:
            continue
        mine = point(t, k)
        if mine is None:
            continue
        rivals = [p for j in trials if j != t and (p := point(j, k)) is not None]
        if len(rivals) < rule.min_curves:
            continue
        beaten = sum(all(a >= b for a, b in zip(p, mine)) and p != mine for p in rivals)
        if beaten >= need:
            stop.add(t)
    return stop


def trials_to_stop(
    s: spec.NASExperimentSpec, experiment: Experiment, running: Iterable[int]
) -> dict[int, str]:
    """Running trials `s.earlyStopping`'s rules say to stop, each with the rules that fired
    (the Pareto rule also needs `s.objectives`)."""
    es = s.early_stopping
    candidates = set(running)
    if es is None or not candidates:
        return {}
    fired: dict[int, list[str]] = {}
    rules = es.all_rules
    for rule in rules:
        try:
            if rule.dominated_by is not None:
                dominated = dominated_trials(rule, s.objectives, experiment, candidates)
                decisions = dict.fromkeys(dominated)
            else:
                decisions = rule_strategy(rule).should_stop_trials_early(
                    trial_indices=candidates, experiment=experiment
                )
        except Exception as e:  # too little data to align curves yet: judge on a later tick
            log.debug("early-stopping rule %s skipped: %s", rule.describe(), e)
            decisions = {}
        for index in decisions:
            fired.setdefault(index, []).append(rule.describe())
    need = len(rules) if es.combine == "all" else 1
    joiner = " and " if es.combine == "all" else "; "
    return {i: joiner.join(why) for i, why in sorted(fired.items()) if len(why) >= need}


def improvement_stall(
    s: spec.NASExperimentSpec,
    observations: list[pareto.Observation],
    initial_trials: int,
    reference: dict[str, float] | None = None,
) -> str | None:
    """Why the search has converged, or None: the hypervolume of the completed trials grew by
    less than `budget.stopWhenImprovementBelow` (relative) over the last `improvementWindow`
    completed trials. Both hypervolumes use one reference point (`reference`, else the one
    inferred from all of `observations`), so the ratio is meaningful."""
    bar = s.budget.stop_when_improvement_below
    if bar is None:
        return None
    window = s.budget.improvement_window
    done = sorted(observations, key=lambda o: o.trial)
    if len(done) < max(2 * window, initial_trials + window):
        return None
    constraints = s.parsed_outcome_constraints
    ref = reference or pareto.reference_point(s.objectives, done, constraints)
    before = pareto.front(s.objectives, constraints, done[:-window], reference=ref).hypervolume
    now = pareto.front(s.objectives, constraints, done, reference=ref).hypervolume
    if before <= 0:
        return None
    gain = (now - before) / before
    if gain >= bar:
        return None
    return (
        f"converged: the hypervolume grew {gain:.2%} over the last {window} completed trials, "
        f"below budget.stopWhenImprovementBelow={bar:g}"
    )


__all__ = ["dominated_trials", "improvement_stall", "rule_strategy", "trials_to_stop"]
