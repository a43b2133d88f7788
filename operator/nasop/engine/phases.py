"""When a search is running, suspended, succeeded or failed: pure rules, tested without Ax.

The rules look only at the saved state, a few trial counts, the spec and the time, so every
branch is a plain function call in tests/engine/test_phases.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nasop import spec
from nasop.engine.events import Event
from nasop.engine.state import SearchState


@dataclass(frozen=True)
class Counts:
    """The trial counts the phase rules need (from the Ax experiment, see ledger.py)."""

    running: int  # running, and candidates of a pack waiting for a slot
    user_failures: int  # failed for the trainer's reasons (not infrastructure)
    completed_here: int  # completed by this search (warm-started copies excluded)
    budget_left: int  # trials budget.maxTrials still allows
    failure_summary: str = ""  # the most common failure reason, for the message


@dataclass(frozen=True)
class Decision:
    phase: spec.Phase
    message: str
    abandon_running: bool = False  # too many failures: the running trials are stopped


def out_of_time(state: SearchState, spec_: spec.NASExperimentSpec, now: float) -> bool:
    limit = spec_.budget.max_duration_seconds
    start = state.start_epoch if state.start_epoch is not None else now
    return limit is not None and now - start > limit


def deadline(state: SearchState, spec_: spec.NASExperimentSpec) -> float:
    """When budget.maxDuration ends, in clock() seconds (the runner gives a Job the time left)."""
    limit = spec_.budget.max_duration_seconds
    return math.inf if limit is None else (state.start_epoch or 0.0) + limit


def decide(
    state: SearchState, counts: Counts, spec_: spec.NASExperimentSpec, now: float
) -> Decision:
    """The phase the search is in now, with the message the status shows.

    Failed: too many infrastructure failures; no trial could start (two rounds of
    budget.parallelism trials, or budget.maxTrials, waited past spec.trial.startTimeout and
    none ever started); more user failures than budget.maxFailedTrials; or nothing left to do
    and nothing completed."""
    budget = spec_.budget
    infra = len(state.infra)
    if infra > max(10, 2 * budget.max_trials) and not counts.running:
        last = state.reasons.get(state.infra[-1], "")
        return Decision(
            spec.Phase.FAILED,
            f"{infra} trials could not run for infrastructure reasons; last: {last}",
        )
    unstarted = len(state.unstarted)
    if not state.started and unstarted >= min(2 * budget.parallelism, budget.max_trials):
        last = state.reasons.get(state.unstarted[-1], "")
        return Decision(
            spec.Phase.FAILED,
            f"no trial could start: {unstarted} trials waited longer than "
            f"spec.trial.startTimeout and none ever ran; last: trial {state.unstarted[-1]} {last}",
            abandon_running=True,
        )
    if counts.user_failures > budget.max_failed_trials:
        return Decision(
            spec.Phase.FAILED,
            f"{counts.user_failures} trials failed, more than budget.maxFailedTrials="
            f"{budget.max_failed_trials}; {counts.failure_summary}",
            abandon_running=True,
        )
    late = out_of_time(state, spec_, now)
    if _nothing_left(state, counts, late):
        if counts.user_failures and not counts.completed_here:  # nothing to show for it
            return Decision(
                spec.Phase.FAILED,
                f"no trial completed ({counts.user_failures} failed); {counts.failure_summary}",
            )
        return Decision(spec.Phase.SUCCEEDED, _why_done(state, counts, spec_, late))
    if spec_.suspend:
        return Decision(spec.Phase.SUSPENDED, "spec.suspend is true: no new trials are launched")
    return Decision(spec.Phase.RUNNING, "")


def apply(state: SearchState, decision: Decision, events: list[Event]) -> bool:
    """Record the decision in the state, with an event when the phase changed; True if the
    status changed."""
    old = state.phase
    if decision.phase is old and decision.message == state.message:
        return False
    state.phase, state.message = decision.phase, decision.message
    if decision.phase is not old:
        if decision.phase in (spec.Phase.SUCCEEDED, spec.Phase.FAILED):
            state.completion_time = spec.now_rfc3339()
        events.append(
            Event(
                f"Search{decision.phase.value}",
                decision.message or f"phase {decision.phase.value}",
                warning=decision.phase is spec.Phase.FAILED,
            )
        )
    return True


def _nothing_left(state: SearchState, counts: Counts, late: bool) -> bool:
    """No trial runs or waits to run again, and no new one may start."""
    stop = counts.budget_left == 0 or late or state.exhausted or bool(state.converged)
    return stop and not counts.running and not state.requeue


def _why_done(state: SearchState, counts: Counts, spec_: spec.NASExperimentSpec, late: bool) -> str:
    if state.converged:
        return state.converged
    if late and counts.budget_left:
        return "budget.maxDuration reached"
    if state.exhausted:
        return "search space exhausted"
    return f"all {spec_.budget.max_trials} trials done"


__all__ = ["Counts", "Decision", "apply", "deadline", "decide", "out_of_time"]
