"""What one tick of a search tells its caller: the events to show and whether to write status."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Something a user should hear about (the operator turns these into Kubernetes Events)."""

    reason: str  # TrialLaunched | TrialCompleted | TrialFailed | TrialEarlyStopped | Phase...
    message: str
    trial: int | None = None
    warning: bool = False


@dataclass
class TickReport:
    events: list[Event] = field(default_factory=list)
    changed: bool = False  # the status changed: save, and write it
    generating: bool = False  # a generation step is running: tick again soon


__all__ = ["Event", "TickReport"]
