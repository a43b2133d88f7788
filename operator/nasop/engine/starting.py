"""Launched is not started: trials that wait, why they wait, and a search that cannot start.

A cluster trial is pending from its launch until its pod (every pod of its pack) runs. While it
waits, the runner's observation carries the reason the scheduler, kubelet or queue gives
(trials/waiting.py). The rules here, pure functions of the search state and the time:

- a trial seen running is *started* (`state.started`, the time); a local process starts at once;
- a trial waiting longer than :data:`GRACE_SECONDS` has its reason recorded (`state.waits`) and
  one `TrialWaiting` event per trial and kind of reason (`state.told`), not one per tick (none
  for a container that is merely being created);
- a trial still waiting after `spec.trial.startTimeout` fails (an infrastructure failure, not
  counted against budget.maxFailedTrials, not retried: its arm could not start either);
- the search is *stalled* (:func:`stalled`) when trials wait, none runs, and none has started for
  :func:`stall_after` seconds; it clears as soon as one starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from nasop import formatting
from nasop.engine.events import Event, TickReport
from nasop.engine.state import SearchState
from nasop.trials import waiting
from nasop.trials.runner import TrialObservation

GRACE_SECONDS = 10.0  # a pod that takes this long to start is worth a word
STALL_SECONDS = 300.0  # no trial started for this long (or half the start timeout): stalled

#: what to do about each kind of reason (the Stalled message says it)
FIXES = {
    "Unschedulable": "create what the trial pods need (a claim, a node that fits "
    "spec.trial.resources, room in the Volcano queue), or change spec.trial",
    "ErrImagePull": "check spec.trial.image and that the nodes can pull it",
    "InvalidImageName": "fix spec.trial.image",
    "CreateContainerConfigError": "create the ConfigMap or Secret the trial pods refer to",
    "CreateContainerError": "fix spec.trial.command or the image",
    "WorkloadNotAdmitted": "give the Kueue queue of spec.trial.queue quota, or free some",
    "PodGroupNotAdmitted": "open the Volcano queue of spec.trial.queue, or give it capacity",
}


def stall_after(start_timeout: float) -> float:
    """Seconds without a trial starting (while trials wait) before the search is stalled."""
    return min(STALL_SECONDS, start_timeout / 2)


def track(
    state: SearchState,
    index: int,
    obs: TrialObservation,
    now: float,
    start_timeout: float,
    report: TickReport,
) -> str | None:
    """Record what a launched, unended trial's observation says; the reason to fail it if
    it has waited longer than `start_timeout`, else None.

    Args:
        state: the search state (started, pendingSince, waits and told are updated).
        index: the trial.
        obs: the runner's observation (status RUNNING; `pending` None: not known now).
        now: clock() seconds.
        start_timeout: spec.trial.startTimeout in seconds.
        report: gets the TrialStarted/TrialWaiting events; `changed` when the status changes.
    """
    if obs.pending is None or index in state.started:
        return None
    if not obs.pending:
        state.started[index] = now
        state.waits.pop(index, None)
        state.told.pop(index, None)
        report.changed = True
        return None
    since = state.pending_since.setdefault(index, now)
    waited = now - since
    said = state.waits.get(index, "")
    if waited >= start_timeout:
        why = obs.reason or said or "its pods were never scheduled"
        return (
            f"did not start within spec.trial.startTimeout "
            f"({formatting.seconds(start_timeout)}): {why}"
        )
    if waited < GRACE_SECONDS or not obs.reason:
        return None
    kind = waiting.kind(obs.reason)
    if said and waiting.kind(said) == kind:
        return None  # the same problem in other words (a back-off, a count): said already
    state.waits[index] = obs.reason
    report.changed = True
    told = state.told.setdefault(index, [])
    if kind not in told and kind not in waiting.BENIGN:  # a pod being created is no news
        told.append(kind)
        report.events.append(
            Event(
                "TrialWaiting",
                f"trial {index} has waited {formatting.seconds(waited)} to start: {obs.reason}",
                index,
                warning=True,
            )
        )
    return None


def forget(state: SearchState, index: int) -> None:
    """A trial ended: its waiting reason is history (its reason to end says the rest)."""
    state.waits.pop(index, None)
    state.told.pop(index, None)


def summary(state: SearchState, pending: Iterable[int]) -> str:
    """The most common reason the pending trials wait (and how many others there are)."""
    reasons = [state.waits[i] for i in pending if state.waits.get(i)]
    if not reasons:
        return ""
    counted = Counter(reasons).most_common()
    reason, _ = counted[0]
    others = len(counted) - 1
    return reason + (f" (and {others} other reason{'s' if others > 1 else ''})" if others else "")


def stalled(
    state: SearchState, pending: list[int], started_running: int, now: float, start_timeout: float
) -> str:
    """Why nothing can start, or "" when the search is not stalled.

    Stalled: trials wait, none runs, and no trial has started for `stall_after` seconds, counted
    from the later of the last start and the first launch since then that is still waiting or
    failed to start (so trials that time out and are replaced do not reset the clock).
    """
    if not pending or started_running:
        return ""
    last_start = max(state.started.values(), default=float("-inf"))
    launches = [
        state.pending_since[i]
        for i in [*pending, *state.unstarted]
        if i in state.pending_since and state.pending_since[i] > last_start
    ]
    if not launches:
        return ""
    after = stall_after(start_timeout)
    if now - min(launches) < after:
        return ""
    n = len(pending)
    why = summary(state, pending) or "their pods are not scheduled yet"
    fix = FIXES.get(waiting.kind(why), "see the trial pods' events (kubectl describe pod)")
    return (
        f"no trial has started for more than {formatting.seconds(after)}; {n} trial"
        f"{' waits' if n == 1 else 's wait'}: {why}. To fix: {fix}. A trial that waits longer "
        f"than spec.trial.startTimeout ({formatting.seconds(start_timeout)}) fails"
    )


def update_stall(
    state: SearchState, pending: list[int], started_running: int, now: float, start_timeout: float
) -> bool:
    """Keep `state.stalled` current; True when it changed (the status must be written)."""
    why = stalled(state, pending, started_running, now, start_timeout)
    if why == state.stalled:
        return False
    state.stalled = why
    return True


__all__ = [
    "FIXES",
    "GRACE_SECONDS",
    "STALL_SECONDS",
    "forget",
    "stall_after",
    "stalled",
    "summary",
    "track",
    "update_stall",
]
