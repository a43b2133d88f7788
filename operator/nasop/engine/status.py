"""The `status` block of a NASExperiment, built from a search's ledger: the same for CLI and
operator."""

from __future__ import annotations

from typing import Any

from nasop import spec
from nasop.engine import conditions, pareto, starting
from nasop.engine.ledger import Ledger
from nasop.engine.state import SearchState

MAX_FRONT_IN_STATUS = 50  # keeps the resource small; the full front is in `nasop report`


def build(book: Ledger, front: pareto.Front) -> spec.NASExperimentStatus:
    state = book.state
    points = [
        spec.ParetoPoint(trial=p.trial, job=p.job, parameters=p.parameters, metrics=p.metrics)
        for p in front.points[:MAX_FRONT_IN_STATUS]
    ]
    trials = book.counts()
    times = state.condition_times
    conds = [
        c.model_copy(update={"last_transition_time": times[c.type][1]}) if c.type in times else c
        for c in conditions.from_phase(state.phase, state.message, **_activity(book, trials))
    ]
    inferred = [o.metric for o in book.spec.objectives if o.threshold is None]
    if inferred and front.reference:
        conds.append(_inferred_condition(inferred, state))
    return spec.NASExperimentStatus(
        phase=state.phase,
        message=state.message or None,
        trials=trials,
        generator=state.generator,
        hypervolume=round(front.hypervolume, 10) if front.points else 0.0,
        objective_thresholds=front.reference,
        inferred_thresholds=inferred if front.reference else [],
        pareto_size=len(front.points),
        pareto_front=points,
        start_time=state.start_time or None,
        completion_time=state.completion_time,
        conditions=conds,
    )


def _inferred_condition(metrics: list[str], state: SearchState) -> spec.Condition:
    """Says that (and how) the reference point was inferred, and whether it may still move."""
    fixed = state.reference is not None
    rule = (
        f"no threshold for {', '.join(metrics)}: reference point inferred from the observed "
        "front (worst value less 10% of the range)"
    )
    return spec.Condition(
        type="ThresholdsInferred",
        status="True",
        reason="Fixed" if fixed else "Provisional",
        message=f"{rule}; "
        + (
            "fixed once the initial trials ended"
            if fixed
            else "it follows the front until the initial trials have ended"
        ),
        last_transition_time=state.reference_time or state.start_time,
    )


def _activity(book: Ledger, trials: spec.TrialCounts) -> dict[str, Any]:
    """What the conditions say about the trials: launched, waiting (and why), stalled."""
    return {
        "running": trials.running + trials.pending,
        "pending": trials.pending,
        "waiting": starting.summary(book.state, book.pending()),
        "stalled": book.state.stalled,
        "since": book.state.start_time,
    }


def track_conditions(book: Ledger) -> None:
    """Record when each condition last changed status (state.condition_times), so that
    `nasop status` reports transition times as the operator keeps them (conditions.settle)."""
    now = spec.now_rfc3339()
    state = book.state
    for c in conditions.from_phase(state.phase, **_activity(book, book.counts())):
        if state.condition_times.get(c.type, [None])[0] != c.status:
            state.condition_times[c.type] = [c.status, now]


__all__ = ["build", "track_conditions"]
