"""The conditions of a NASExperiment, as GitOps tools read them (kstatus, Argo CD).

Kubernetes API conventions: a condition's type is a stable name and only its status changes.
kstatus (Flux's `wait` and `healthChecks`) reads `Reconciling` (True: work in progress) and
`Stalled` (True: failed, needs a change) beside `Ready` and `status.observedGeneration`;
docs/argocd-health.lua reads the same conditions for Argo CD.

A condition follows from the phase alone, so one table says it all:

| phase      | Ready              | Reconciling                  | Stalled            |
|------------|--------------------|------------------------------|--------------------|
| Pending    | False, Pending     | True, Pending                | False, Pending     |
| Running    | False, Running     | True, Running                | False, Running     |
| Suspended  | False, Suspended   | True while trials still run  | False, Suspended   |
| Succeeded  | True, Succeeded    | False, Succeeded             | False, Succeeded   |
| Failed     | False, Failed      | False, Failed                | True, Failed       |
| Invalid    | False, Invalid     | False, Invalid               | True, Invalid      |

One exception: a Running (or Suspended) search whose trials wait and none has started for a
while (starting.stalled) is not making progress: Reconciling False and Stalled True, both with
reason TrialsCannotStart and the waiting trials' reason (kstatus reads Reconciling before
Stalled, so Reconciling must be False for Flux to say Failed). It clears when a trial starts.

`SpecAccepted` is False (reason InvalidSpec) on an invalid manifest and False (ImmutableField)
on a refused spec change; True otherwise.

`lastTransitionTime` changes only when a condition's status changes: :func:`settle` keeps the
time of the previous write for every condition whose status stayed the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nasop import spec

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
SPEC_ACCEPTED = "SpecAccepted"
TYPES = (READY, RECONCILING, STALLED, SPEC_ACCEPTED)
TRIALS_CANNOT_START = "TrialsCannotStart"

_STALLED_PHASES = (spec.Phase.FAILED, spec.Phase.INVALID)
_WORKING_PHASES = (spec.Phase.PENDING, spec.Phase.RUNNING)


def _tf(value: bool) -> Any:
    return "True" if value else "False"


def from_phase(
    phase: spec.Phase,
    message: str = "",
    *,
    running: int = 0,
    since: str = "",
    generation: int | None = None,
    pending: int = 0,
    waiting: str = "",
    stalled: str = "",
) -> list[spec.Condition]:
    """Ready, Reconciling, Stalled and SpecAccepted for a search in `phase`.

    Args:
        phase: the search's phase.
        message: why the phase is what it is (shown on Ready, and on Stalled when stalled).
        running: trials launched and not ended, pending ones included (a suspended search is
            reconciling until they end).
        pending: of those, the trials whose pods do not run yet.
        waiting: why they wait (a summary of their reasons), "" when not known.
        stalled: why nothing can start (starting.stalled), "" when trials start.
        since: the time of the last phase change (RFC 3339), the transition time to report.
        generation: the spec generation this status describes.
    """
    reason = phase.value
    reconciling = phase in _WORKING_PHASES or (phase is spec.Phase.SUSPENDED and running > 0)
    stuck = bool(stalled) and reconciling
    is_stalled = phase in _STALLED_PHASES or stuck
    started = running - pending
    trials = f"{started} trial{'' if started == 1 else 's'}"
    if pending:
        said = f": {waiting}" if waiting else " to start"
        trials += f" running, {pending} waiting{said};"
    else:
        trials += " running;" if phase is not spec.Phase.SUSPENDED else " still running;"
    if reconciling and phase is spec.Phase.SUSPENDED:
        busy = f"{trials} no new trials are launched"
    elif reconciling:
        busy = f"{trials} more are generated and launched"
    else:
        busy = message
    invalid = phase is spec.Phase.INVALID
    stall_reason, stall_message = reason, message if is_stalled else ""
    if stuck:
        reconciling, busy = False, stalled
        stall_reason = reconcile_reason = TRIALS_CANNOT_START
        stall_message = stalled
    else:
        reconcile_reason = reason

    def cond(type_: str, status: bool, reason_: str, message_: str) -> spec.Condition:
        return spec.Condition(
            type=type_,
            status=_tf(status),
            reason=reason_,
            message=message_,
            last_transition_time=since,
            observed_generation=generation,
        )

    return [
        cond(READY, phase is spec.Phase.SUCCEEDED, reason, message),
        cond(RECONCILING, reconciling, reconcile_reason, busy),
        cond(STALLED, is_stalled, stall_reason, stall_message),
        cond(
            SPEC_ACCEPTED,
            not invalid,
            "InvalidSpec" if invalid else "Accepted",
            message if invalid else "",
        ),
    ]


def settle(
    previous: Iterable[Mapping[str, Any]] | None,
    current: Iterable[Mapping[str, Any]],
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """`current` (wire-form conditions) as they are to be written after `previous`.

    A condition whose status did not change keeps its previous lastTransitionTime; one whose
    status changed (or that is new) gets its own time, or `now` when it has none. Every
    condition gets `observedGeneration` = `generation` when that is known.
    """
    before = {str(c.get("type")): c for c in previous or ()}
    out: list[dict[str, Any]] = []
    for c in current:
        c = dict(c)
        old = before.get(str(c.get("type")))
        if (
            old is not None
            and old.get("status") == c.get("status")
            and old.get("lastTransitionTime")
        ):
            c["lastTransitionTime"] = old["lastTransitionTime"]
        elif old is not None or not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = now or spec.now_rfc3339()
        if generation is not None:
            c["observedGeneration"] = generation
        out.append(c)
    return out


__all__ = [
    "READY",
    "RECONCILING",
    "SPEC_ACCEPTED",
    "STALLED",
    "TRIALS_CANNOT_START",
    "TYPES",
    "from_phase",
    "settle",
]
