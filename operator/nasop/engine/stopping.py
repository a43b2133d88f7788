"""When to stop: trials early (learning-curve rules) and the whole search (hypervolume stalled).

A percentile or threshold rule is one of Ax's own strategies on one metric. The Pareto rule
(`dominatedBy`) is nasop's: Ax 1.3's strategies judge one metric, so in an accuracy-vs-size
search they stop small models whose accuracy trails the big ones', which are the cheap end of
the front. It stops a trial only when enough other trials already beat it on every objective:
its learning curve at its latest epoch against theirs at the same epoch, the other objectives
(e.g. num_params, logged once) at their latest values. Rules are evaluated one by one and
combined here (`any` = union, `all` = intersection) so that the reason a user reads names
exactly the rules that fired, not Ax's multi-line diagnostics.

The front rule (`frontProbability`) is nasop's too, and model-based. A trial adds hypervolume
only if its *final* value of the rule's metric beats the best final value of the completed
trials that are at least as good on every other objective (sizes such as num_params, reported
once at step 0 and known from then on): the front's staircase at the trial's cost, a
one-dimensional bar known before it trains (`needed_to_add`). Its final value is predicted from
its latest value plus the gains other trials made over the same steps (from its latest step to
its last planned one), under a Gaussian kernel density of those gains (`chance_above`): an
empirical model with no parameters to fit, calibrated by construction on this search's own
curves. A trial is stopped when that probability is below the rule's level; a trial on the
front (already above its bar) never is.

The gain rule (`gainRatio`) prices that prediction. The hypervolume a trial would add is a
function of its final value: zero up to its bar, then growing at the staircase's width at each
level (wide where the front is sparse: above the most accurate trial, a whole box). Its
expectation under the same kernel density is exact and cheap (`expected_gain`: piecewise-linear
gains against a Gaussian mixture's tail). The trial is stopped when that gain per second of its
remaining training is below `gainRatio` times what the search has lately bought per trainer
second (`recent_rate`: the hypervolume its last completed trials added over the seconds every
trial ended in that time ran): continuing it buys less than the average trial. So a trial with
a small chance of a large gain (the accurate end of the front) runs on, where the front rule
would stop it, and one that can only add a sliver of a crowded front stops, whatever its chance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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


@dataclass(frozen=True)
class Curve:
    """One trial as the front rule sees it, every value signed so that larger is better."""

    values: Mapping[int, float]  # the rule's metric by step
    known: tuple[float, ...] | None  # every other objective (None until all are logged)
    final_step: int | None  # the last step it is planned to log (None: unknown)
    completed: bool
    ran: float | None = None  # seconds it has run (None: unknown)
    features: tuple[float, ...] | None = None  # its parameters in the unit cube (`unit_features`)


def needed_to_add(
    known: Sequence[float],
    finals: Iterable[tuple[float, Sequence[float]]],
    floor: float = -math.inf,
    known_floor: Sequence[float] | None = None,
) -> float:
    """The value a point with other objectives `known` must exceed to add hypervolume: the
    best of `finals` (value, other objectives) at least as good on every other objective, and
    `floor` (the metric's reference); +inf when `known` is not better than `known_floor` (the
    other objectives' references) anywhere it must be. All signed: larger is better."""
    if known_floor is not None and any(k <= f for k, f in zip(known, known_floor)):
        return math.inf
    bar = floor
    for value, other in finals:
        if value > bar and all(o >= k for o, k in zip(other, known)):
            bar = value
    return bar


def chance_above(
    current: float, gains: Sequence[float], needed: float, weights: Sequence[float] | None = None
) -> float:
    """P(current + gain > needed) for a gain drawn from a Gaussian kernel density of `gains`
    (Silverman's bandwidth; weighted by `weights`, summing to 1, when given): smooth, so a
    handful of curves still gives probabilities below 1/n, and deterministic."""
    if not gains:
        return 1.0
    if math.isinf(needed):
        return 0.0 if needed > 0 else 1.0
    w, h = _kernel(gains, weights)
    return sum(
        wi * 0.5 * math.erfc((needed - current - g) / (h * math.sqrt(2))) for g, wi in zip(gains, w)
    )


@dataclass(frozen=True)
class FrontCall:
    """Why the front rule stops a trial: the numbers that decided it."""

    probability: float
    needed: float  # signed
    step: int
    final_step: int
    curves: int


def _judgeable(
    rule: spec.StoppingRule, curves: Mapping[int, Curve], t: int
) -> tuple[Curve, int, int, list[Curve]] | None:
    """A running trial a model-based rule may judge now: its curve, its latest step k (within
    [minProgression, maxProgression]) and final step K > k, and the other curves that logged
    both (at least `minCurves`, in trial order); None when it may not."""
    c = curves.get(t)
    if c is None or not c.values or c.known is None or c.final_step is None:
        return None
    k, end = max(c.values), c.final_step
    past_max = rule.max_progression is not None and k > rule.max_progression
    if k < rule.min_progression or past_max or k >= end:
        return None
    rivals = [o for j, o in sorted(curves.items()) if j != t and k in o.values and end in o.values]
    if len(rivals) < rule.min_curves:
        return None
    return c, k, end, rivals


def front_calls(
    rule: spec.StoppingRule,
    curves: Mapping[int, Curve],
    running: Iterable[int],
    floor: float = -math.inf,
    known_floor: Sequence[float] | None = None,
) -> dict[int, FrontCall]:
    """Running trials the front rule stops: the chance that the final value beats the bar
    (`needed_to_add` against the completed trials) is below `rule.front_probability`.

    A trial is judged at its latest step k in [minProgression, maxProgression] with a final step
    K > k, once `minCurves` other trials have logged both k and K (their gains K - k are the
    model); never while its latest value is above its bar (it is on the front)."""
    level = rule.front_probability or 0.0
    finals: list[tuple[float, Sequence[float]]] = [
        (c.values[max(c.values)], c.known)
        for c in curves.values()
        if c.completed and c.values and c.known is not None
    ]
    calls: dict[int, FrontCall] = {}
    for t in running:
        judged = _judgeable(rule, curves, t)
        if judged is None:
            continue
        c, k, end, rivals = judged
        assert c.known is not None  # _judgeable checked it
        gains = [o.values[end] - o.values[k] for o in rivals]
        needed = needed_to_add(c.known, finals, floor, known_floor)
        if c.values[k] > needed:
            continue
        p = chance_above(c.values[k], gains, needed)
        if p < level:
            calls[t] = FrontCall(p, needed, k, end, len(gains))
    return calls


@dataclass(frozen=True)
class _Judged:
    """An Ax experiment's curves as the model-based rules judge them, signed larger-is-better."""

    curves: dict[int, Curve]
    others: list[spec.Objective]  # every objective but the rule's, in `Curve.known`'s order
    sign: dict[str, float]


def _judged(
    rule: spec.StoppingRule,
    s: spec.NASExperimentSpec,
    experiment: Experiment,
    ran: Mapping[int, float | None] | None = None,
) -> _Judged | None:
    """Every other objective is taken at its latest value (its final value when the trainer
    reports it once, at step 0, as the contract asks of sizes). A trial's final step is its
    `earlyStopping.epochsParameter` value minus 1 when that is set, else the last step the
    completed trials logged."""
    df = experiment.lookup_data().full_df
    if df.empty or "step" not in df.columns:
        return None
    objectives = s.objectives
    sign = {o.metric: -1.0 if o.minimize else 1.0 for o in objectives}
    others = [o for o in objectives if o.metric != rule.metric]
    curve = df[df["metric_name"] == rule.metric]
    values: dict[int, dict[int, float]] = {}
    for i, k, v in zip(curve["trial_index"], curve["step"], curve["mean"]):
        values.setdefault(int(i), {})[int(k)] = sign[rule.metric] * float(v)
    latest = (
        df[df["metric_name"].isin([o.metric for o in others])]
        .sort_values("step")
        .groupby(["trial_index", "metric_name"])["mean"]
        .last()
    )
    rest: dict[int, dict[str, float]] = {}
    for (i, m), v in latest.items():
        rest.setdefault(int(i), {})[str(m)] = sign[str(m)] * float(v)
    done = {i for i, t in experiment.trials.items() if t.status.is_completed}
    epochs = s.early_stopping.epochs_parameter if s.early_stopping else None
    common = max((max(values[i]) for i in done if values.get(i)), default=None)
    curves: dict[int, Curve] = {}
    for i, vs in values.items():
        r = rest.get(i, {})
        known = tuple(r[o.metric] for o in others) if len(r) == len(others) else None
        end = common
        arm = experiment.trials[i].arms[0] if experiment.trials[i].arms else None
        if epochs is not None and arm is not None and epochs in arm.parameters:
            end = int(arm.parameters[epochs]) - 1  # type: ignore[arg-type]
        features = unit_features(arm.parameters, s.search_space, epochs) if arm else None
        curves[i] = Curve(vs, known, end, i in done, (ran or {}).get(i), features)
    return _Judged(curves, others, sign)


def front_trials(
    rule: spec.StoppingRule,
    s: spec.NASExperimentSpec,
    experiment: Experiment,
    running: Iterable[int],
) -> dict[int, str]:
    """The front rule on an Ax experiment: running trials to stop, each with its numbers."""
    judged = _judged(rule, s, experiment)
    if judged is None:
        return {}
    curves, others, sign = judged.curves, judged.others, judged.sign
    metric = next(o for o in s.objectives if o.metric == rule.metric)
    floor = -math.inf if metric.threshold is None else sign[metric.metric] * metric.threshold
    known_floor = tuple(
        -math.inf if o.threshold is None else sign[o.metric] * o.threshold for o in others
    )
    calls = front_calls(rule, curves, running, floor, known_floor)
    return {
        t: rule.describe_call(
            call.probability,
            sign[rule.metric] * call.needed,
            {o.metric: sign[o.metric] * k for o, k in zip(others, curves[t].known or ())},
            call.step,
            call.final_step,
            call.curves,
        )
        for t, call in calls.items()
    }


def gain_trials(
    rule: spec.StoppingRule,
    s: spec.NASExperimentSpec,
    experiment: Experiment,
    running: Iterable[int],
    reference: Mapping[str, float] | None,
    ran: Mapping[int, float | None],
) -> dict[int, str]:
    """The gain rule on an Ax experiment: running trials to stop, each with its numbers.
    `reference` is the hypervolume's reference point by metric (the objectives' thresholds
    where the spec has them, else the search's fixed one: nothing is judged before there is
    one); `ran` the seconds each trial has run (while running: so far)."""
    ref = {o.metric: o.threshold for o in s.objectives if o.threshold is not None}
    ref = {**(reference or {}), **ref}
    if any(o.metric not in ref for o in s.objectives):
        return {}
    judged = _judged(rule, s, experiment, ran)
    if judged is None:
        return {}
    curves, others, sign = judged.curves, judged.others, judged.sign
    point_ref = (
        sign[rule.metric] * ref[rule.metric],
        *(sign[o.metric] * ref[o.metric] for o in others),
    )
    ended = []
    for i, trial in experiment.trials.items():
        c, seconds = curves.get(i), ran.get(i)
        if trial.time_completed is None or seconds is None or c is None:
            continue
        point = (
            (c.values[max(c.values)], *c.known)
            if c.completed and c.values and c.known is not None
            else None
        )
        if point is not None or trial.status.is_early_stopped:
            ended.append(Ended(trial.time_completed.timestamp(), seconds, point))
    rate = recent_rate(ended, point_ref, RATE_WINDOW)
    calls = gain_calls(rule, curves, running, point_ref, rate)
    return {
        t: rule.describe_gain(
            call.gain,
            call.seconds,
            call.rate,
            RATE_WINDOW,
            call.probability,
            sign[rule.metric] * call.needed,
            {o.metric: sign[o.metric] * k for o, k in zip(others, curves[t].known or ())},
            call.step,
            call.final_step,
        )
        for t, call in calls.items()
    }


#: completed trials whose added hypervolume prices a trainer second (`recent_rate`)
RATE_WINDOW = 8


def _tail_integral(
    a: float, b: float, centers: Sequence[float], h: float, weights: Sequence[float]
) -> float:
    """The integral over [a, b] of P(V > y) for V a mixture of Gaussians N(c, h²), c in
    `centers` with `weights` (b may be +inf): h·(F((b - c)/h) - F((a - c)/h)) with
    F(z) = z·Q(z) - φ(z)."""

    def f(z: float) -> float:
        if math.isinf(z):
            return 0.0 if z > 0 else -math.inf
        q = 0.5 * math.erfc(z / math.sqrt(2))
        return z * q - math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    return sum(w * h * (f((b - c) / h) - f((a - c) / h)) for c, w in zip(centers, weights))


def bandwidth(gains: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Silverman's bandwidth of `gains` (the kernel density `chance_above` uses): the weighted
    spread and Kish's effective number of curves; with equal weights (the default) the sample
    standard deviation and the number of curves."""
    if weights is None:
        n = len(gains)
        mean = sum(gains) / n
        sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / max(n - 1, 1))
        return max(1.06 * sd * n ** (-0.2), 1e-12)
    n_eff = 1.0 / sum(w * w for w in weights)
    mean = sum(w * g for w, g in zip(weights, gains))
    var = sum(w * (g - mean) ** 2 for w, g in zip(weights, gains))
    sd = math.sqrt(var * n_eff / max(n_eff - 1.0, 1.0))
    return max(1.06 * sd * n_eff ** (-0.2), 1e-12)


def _kernel(gains: Sequence[float], weights: Sequence[float] | None) -> tuple[list[float], float]:
    """The kernel density's weights (equal unless given) and bandwidth."""
    if weights is None:
        return [1.0 / len(gains)] * len(gains), bandwidth(gains)
    return list(weights), bandwidth(gains, weights)


#: the kernel's length in the unit cube of the parameters for `similarity_weights`
SIMILARITY = 0.3


def unit_features(
    parameters: Mapping[str, Any], space: Sequence[spec.Parameter], skip: str | None = None
) -> tuple[float, ...]:
    """A trial's parameters in the unit cube: a range on its own scale (log where `log`), an
    ordered choice by its position; an unordered choice one coordinate per value (1 where
    chosen). Fixed parameters and `skip` (the epochs parameter: the final step already
    says how long a trial trains) are left out."""
    out: list[float] = []
    for p in space:
        if p.name == skip or p.type is spec.ParameterType.FIXED or p.name not in parameters:
            continue
        x = parameters[p.name]
        if p.type is spec.ParameterType.CHOICE:
            values = p.values or []
            if p.ordered or (p.ordered is None and _numeric(values)):
                out.append(values.index(x) / max(len(values) - 1, 1) if x in values else 0.0)
            else:
                out += [float(x == v) for v in values]
            continue
        low, high = p.bounds or (0.0, 1.0)
        if p.log and low > 0:
            low, high, x = math.log(low), math.log(high), math.log(float(x))
        out.append((float(x) - low) / (high - low) if high > low else 0.0)
    return tuple(out)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def similarity_weights(
    mine: tuple[float, ...] | None, others: Sequence[tuple[float, ...] | None]
) -> list[float]:
    """How much each other curve's gain says about this trial's: a Gaussian kernel of length
    `SIMILARITY` on the distance of their parameters in the unit cube, normalised. A curve
    trained with a similar learning rate and batch size rises as this one will; equal weights
    when the parameters are unknown."""
    known = [o for o in others if o is not None and mine is not None and len(o) == len(mine)]
    if mine is None or len(known) != len(others):
        return [1.0 / len(others)] * len(others)
    raw = [
        math.exp(-0.5 * sum(((a - b) / SIMILARITY) ** 2 for a, b in zip(o, mine, strict=True)))
        + 1e-12
        for o in known
    ]
    total = sum(raw)
    return [r / total for r in raw]


def _front_of(points: list[list[float]]) -> list[list[float]]:
    """The non-dominated points (larger is better everywhere): a dominated final changes
    neither the front's hypervolume nor where its staircase breaks."""
    return [
        p for p in points if not any(all(a >= b for a, b in zip(q, p)) and q != p for q in points)
    ]


def expected_gain(
    current: float,
    gains: Sequence[float],
    known: Sequence[float],
    finals: Sequence[tuple[float, Sequence[float]]],
    reference: Sequence[float],
    weights: Sequence[float] | None = None,
) -> float:
    """E[hypervolume a point (V, *known) adds to `finals`], V = current + a gain drawn from the
    kernel density of `gains` (weighted by `weights`, summing to 1; equal by default). The
    added hypervolume is piecewise linear in V, with breaks at the finals' values: it is
    computed exactly at each break (and one unit above the last), and each linear piece is
    integrated against the mixture's tail in closed form. All signed, larger is better;
    `reference` is (metric, *known) of the hypervolume's reference point."""
    if not gains:
        return 0.0
    ref = np.asarray(reference, dtype=float)
    base_points = _front_of([[v, *o] for v, o in finals])
    base = pareto.hypervolume(np.array(base_points, dtype=float).reshape(-1, len(ref)), ref)

    def added(v: float) -> float:
        pts = np.array([*base_points, [v, *known]], dtype=float)
        return pareto.hypervolume(pts, ref) - base

    breaks = sorted({float(ref[0]), *(p[0] for p in base_points if p[0] > ref[0])})
    values = [added(y) for y in breaks]
    top = added(breaks[-1] + 1.0) - values[-1]  # the slope past every final: a whole box
    w, h = _kernel(gains, weights)
    centers = [current + g for g in gains]
    total = 0.0
    for (a, da), (b, db) in zip(zip(breaks, values), zip(breaks[1:], values[1:])):
        if db > da:
            total += (db - da) / (b - a) * _tail_integral(a, b, centers, h, w)
    if top > 0:
        total += top * _tail_integral(breaks[-1], math.inf, centers, h, w)
    return total


@dataclass(frozen=True)
class Ended:
    """A trial that ended, as `recent_rate` prices a trainer second."""

    end: float  # when it ended (any one clock)
    seconds: float  # how long it ran
    point: tuple[float, ...] | None  # (metric, *known), signed; None for a stopped trial


def recent_rate(ended: Sequence[Ended], reference: Sequence[float], window: int) -> float | None:
    """Hypervolume per trainer second the search bought lately: what its last `window` completed
    trials added to the front of those before them, over the seconds every trial that ended
    after those (completed or stopped) ran. None until `window` + 1 trials have completed."""
    done = sorted((e for e in ended if e.point is not None), key=lambda e: e.end)
    if len(done) <= window:
        return None
    since = done[-window - 1].end
    seconds = sum(e.seconds for e in ended if e.end > since)
    if seconds <= 0:
        return None
    ref = np.asarray(reference, dtype=float)
    before = np.array([e.point for e in done if e.end <= since], dtype=float)
    now = np.array([e.point for e in done], dtype=float)
    return (pareto.hypervolume(now, ref) - pareto.hypervolume(before, ref)) / seconds


@dataclass(frozen=True)
class GainCall:
    """Why the gain rule stops a trial: the numbers that decided it."""

    gain: float  # expected hypervolume added by finishing
    seconds: float  # its remaining training, estimated
    rate: float  # hypervolume per trainer second the search bought lately
    probability: float  # P(final > needed)
    needed: float  # signed
    step: int
    final_step: int
    curves: int


def gain_calls(
    rule: spec.StoppingRule,
    curves: Mapping[int, Curve],
    running: Iterable[int],
    reference: Sequence[float],
    rate: float | None,
) -> dict[int, GainCall]:
    """Running trials the gain rule stops: expected hypervolume gain per remaining second below
    `rule.gain_ratio` times `rate`. Judged as the front rule judges (latest step k in
    [minProgression, maxProgression], `minCurves` other curves with steps k and K); a trial on
    the front, or whose seconds so far are unknown, is never stopped. The remaining seconds are
    (K - k) times its seconds per step so far (process start included, so an over-estimate
    at the first step)."""
    if rate is None:
        return {}
    ratio = rule.gain_ratio or 0.0
    finals: list[tuple[float, Sequence[float]]] = [
        (c.values[max(c.values)], c.known)
        for c in curves.values()
        if c.completed and c.values and c.known is not None
    ]
    floor, known_floor = reference[0], tuple(reference[1:])
    calls: dict[int, GainCall] = {}
    for t in running:
        judged = _judgeable(rule, curves, t)
        if judged is None or not judged[0].ran:
            continue
        c, k, end, rivals = judged
        assert c.known is not None and c.ran  # _judgeable checked the one, the line above the other
        needed = needed_to_add(c.known, finals, floor, known_floor)
        if c.values[k] > needed:
            continue
        gains = [o.values[end] - o.values[k] for o in rivals]
        weights = similarity_weights(c.features, [o.features for o in rivals])
        seconds = (end - k) * c.ran / (k + 1)
        gain = (
            0.0
            if math.isinf(needed)
            else expected_gain(c.values[k], gains, c.known, finals, reference, weights)
        )
        if gain < ratio * rate * seconds:
            p = chance_above(c.values[k], gains, needed, weights)
            calls[t] = GainCall(gain, seconds, rate, p, needed, k, end, len(gains))
    return calls


def trials_to_stop(
    s: spec.NASExperimentSpec,
    experiment: Experiment,
    running: Iterable[int],
    reference: Mapping[str, float] | None = None,
    ran: Mapping[int, float | None] | None = None,
) -> dict[int, str]:
    """Running trials `s.earlyStopping`'s rules say to stop, each with the rules that fired
    (the Pareto rules also need `s.objectives`; the gain rule a hypervolume `reference` by
    metric where the objectives have no thresholds, and the seconds each trial `ran`)."""
    es = s.early_stopping
    candidates = set(running)
    if es is None or not candidates:
        return {}
    fired: dict[int, list[str]] = {}
    rules = es.all_rules
    for rule in rules:
        reasons: dict[int, str] = {}
        try:
            if rule.dominated_by is not None:
                dominated = dominated_trials(rule, s.objectives, experiment, candidates)
                reasons = dict.fromkeys(dominated, rule.describe())
            elif rule.front_probability is not None:
                reasons = front_trials(rule, s, experiment, candidates)  # with its numbers
            elif rule.gain_ratio is not None:
                reasons = gain_trials(rule, s, experiment, candidates, reference, ran or {})
            else:
                decisions = rule_strategy(rule).should_stop_trials_early(
                    trial_indices=candidates, experiment=experiment
                )
                reasons = dict.fromkeys(decisions, rule.describe())
        except Exception as e:  # too little data to align curves yet: judge on a later tick
            log.debug("early-stopping rule %s skipped: %s", rule.describe(), e)
        for index, why in reasons.items():
            fired.setdefault(index, []).append(why)
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


__all__ = [
    "Curve",
    "Ended",
    "FrontCall",
    "GainCall",
    "chance_above",
    "dominated_trials",
    "expected_gain",
    "front_calls",
    "front_trials",
    "gain_calls",
    "gain_trials",
    "improvement_stall",
    "needed_to_add",
    "recent_rate",
    "rule_strategy",
    "similarity_weights",
    "trials_to_stop",
    "unit_features",
]
