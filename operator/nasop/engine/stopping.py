"""When to stop: trials early (learning-curve rules) and the whole search (hypervolume stalled).

Each early-stopping rule is one of Ax's own strategies (percentile or threshold) on one metric;
rules are evaluated one by one and combined here (`any` = union, `all` = intersection) so that the
reason a user reads names exactly the rules that fired, not Ax's multi-line diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ax.core.experiment import Experiment
from ax.early_stopping.strategies.base import BaseEarlyStoppingStrategy
from ax.early_stopping.strategies.percentile import PercentileEarlyStoppingStrategy
from ax.early_stopping.strategies.threshold import ThresholdEarlyStoppingStrategy

from nasop import spec
from nasop.engine import pareto

log = logging.getLogger(__name__)


def rule_strategy(rule: spec.StoppingRule) -> BaseEarlyStoppingStrategy:
    """One spec rule as the Ax strategy that implements it."""
    common = dict(
        metric_signatures=[rule.metric],
        min_progression=rule.min_progression,
        max_progression=rule.max_progression,
        min_curves=rule.min_curves,
    )
    if rule.threshold is not None:
        return ThresholdEarlyStoppingStrategy(metric_threshold=rule.threshold, **common)
    return PercentileEarlyStoppingStrategy(
        percentile_threshold=rule.percentile or 50.0, **common
    )


def trials_to_stop(
    es: spec.EarlyStopping, experiment: Experiment, running: Iterable[int]
) -> dict[int, str]:
    """Running trials the rules say to stop, each with the rules that fired."""
    candidates = set(running)
    if not candidates:
        return {}
    fired: dict[int, list[str]] = {}
    rules = es.all_rules
    for rule in rules:
        try:
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
    s: spec.NASExperimentSpec, observations: list[pareto.Observation], initial_trials: int
) -> str | None:
    """Why the search has converged, or None: the hypervolume of the completed trials grew by
    less than `budget.stopWhenImprovementBelow` (relative) over the last `improvementWindow`
    completed trials. Both hypervolumes use one reference point, so the ratio is meaningful."""
    bar = s.budget.stop_when_improvement_below
    if bar is None:
        return None
    window = s.budget.improvement_window
    done = sorted(observations, key=lambda o: o.trial)
    if len(done) < max(2 * window, initial_trials + window):
        return None
    constraints = s.parsed_outcome_constraints
    ref = pareto.reference_point(s.objectives, done)
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


__all__ = ["improvement_stall", "rule_strategy", "trials_to_stop"]
