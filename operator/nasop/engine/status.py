"""The `status` block of a NASExperiment, built from a Search: the same for CLI and operator."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine import conditions

if TYPE_CHECKING:
    from nasop.engine.search import Search

MAX_FRONT_IN_STATUS = 50  # keeps the resource small; the full front is in `nasop report`


def counts(search: Search) -> spec.TrialCounts:
    by = Counter(t.status for t in search.experiment.trials.values())
    return spec.TrialCounts(
        total=len(search.experiment.trials),
        running=by[TrialStatus.RUNNING],
        completed=by[TrialStatus.COMPLETED],
        failed=by[TrialStatus.FAILED] + by[TrialStatus.ABANDONED],
        early_stopped=by[TrialStatus.EARLY_STOPPED],
        warm_started=len(search.props.get("warm", {})),
    )


def most_common_reason(reasons: list[str]) -> str:
    """E.g. "most common reason (4 of 6): val_acc is NaN at step 2"."""
    if not reasons:
        return "no reason recorded"
    reason, n = Counter(reasons).most_common(1)[0]
    return f"most common reason ({n} of {len(reasons)}): {reason}"


def build(search: Search) -> spec.NASExperimentStatus:
    front = search.front()
    props = search.props
    points = [
        spec.ParetoPoint(trial=p.trial, job=p.job, parameters=p.parameters, metrics=p.metrics)
        for p in front.points[:MAX_FRONT_IN_STATUS]
    ]
    trials = counts(search)
    times = props.get("conditionTimes", {})
    conds = [
        c.model_copy(update={"last_transition_time": times[c.type][1]}) if c.type in times else c
        for c in conditions.from_phase(search.phase, props.get("message") or "",
                                       running=trials.running, since=props.get("startTime", ""))
    ]
    inferred = [o.metric for o in search.spec.objectives if o.threshold is None]
    if inferred and front.reference:
        conds.append(_inferred_condition(inferred, "reference" in props, props))
    return spec.NASExperimentStatus(
        phase=search.phase,
        message=props.get("message") or None,
        trials=trials,
        generator=props.get("generator"),
        hypervolume=round(front.hypervolume, 10) if front.points else 0.0,
        objective_thresholds=front.reference,
        inferred_thresholds=inferred if front.reference else [],
        pareto_size=len(front.points),
        pareto_front=points,
        start_time=props.get("startTime"),
        completion_time=props.get("completionTime"),
        conditions=conds,
    )


def _inferred_condition(metrics: list[str], fixed: bool, props: dict[str, Any]) -> spec.Condition:
    """Says that (and how) the reference point was inferred, and whether it may still move."""
    rule = (f"no threshold for {', '.join(metrics)}: reference point inferred from the observed "
            "front (worst value less 10% of the range)")
    return spec.Condition(
        type="ThresholdsInferred",
        status="True",
        reason="Fixed" if fixed else "Provisional",
        message=f"{rule}; " + ("fixed once the initial trials ended" if fixed else
                               "it follows the front until the initial trials have ended"),
        last_transition_time=props.get("referenceTime") or props.get("startTime", ""),
    )


def track_conditions(search: Search) -> None:
    """Record when each condition last changed status (props["conditionTimes"]), so that
    `nasop status` reports transition times as the operator keeps them (conditions.settle)."""
    times = search.props.setdefault("conditionTimes", {})
    now = spec.now_rfc3339()
    for c in conditions.from_phase(search.phase, running=counts(search).running):
        if times.get(c.type, [None])[0] != c.status:
            times[c.type] = [c.status, now]


__all__ = ["build", "counts", "most_common_reason", "track_conditions"]
