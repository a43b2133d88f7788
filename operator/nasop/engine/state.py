"""The search's own state, saved inside the Ax experiment so every store keeps it for free.

Ax persists an experiment's `_properties` dict with the experiment (files, SQL, ConfigMap), so
the search keeps what Ax does not model (why each trial ended, which trials are retried free,
the fixed reference point, the phase) under one key there. `SearchState` is that dict, typed:
`to_dict()` writes it, `from_dict()` reads it back, also from a state saved before the format
carried a version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nasop import errors, spec

if TYPE_CHECKING:  # the phase rules and their tests import this module without Ax
    from ax.core.experiment import Experiment

PROPS = "nasop"  # the key in `experiment._properties`
VERSION = 1  # 0: the unversioned dict of the first format (same keys, no "version")


@dataclass
class SearchState:
    """What the search remembers between ticks and across restarts."""

    fingerprint: dict[str, Any] | None = None  # search space etc.: they may not change
    start_time: str = ""  # RFC 3339, shown in the status
    start_epoch: float | None = None  # budget.maxDuration counts from here (clock())
    phase: spec.Phase = spec.Phase.RUNNING
    message: str = ""
    completion_time: str | None = None
    reasons: dict[int, str] = field(default_factory=dict)  # trial -> why it ended as it did
    infra: list[int] = field(default_factory=list)  # not the trainer's fault: retried free
    requeue: list[int] = field(default_factory=list)  # interrupted trials to run again
    warm: dict[int, str] = field(default_factory=dict)  # copied trial -> "source#index"
    reference: dict[str, float] | None = None  # an inferred reference point, once fixed
    reference_time: str | None = None
    converged: str | None = None  # why the search stopped improving
    exhausted: bool = False  # the generation strategy has nothing more to propose
    generator: str | None = None  # the node that proposed the last trial
    condition_times: dict[str, list[str]] = field(default_factory=dict)  # type -> [status, time]
    # starting.py: when each trial was first seen waiting and seen started (clock() seconds),
    # why a waiting trial waits, the reason kinds an event was sent for, why nothing starts
    pending_since: dict[int, float] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    waits: dict[int, str] = field(default_factory=dict)
    told: dict[int, list[str]] = field(default_factory=dict)
    unstarted: list[int] = field(default_factory=list)  # failed: never started in time
    stalled: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (stores serialise it as JSON); optional fields when set."""
        out: dict[str, Any] = {
            "version": VERSION,
            "startTime": self.start_time,
            "phase": self.phase.value,
            "message": self.message,
            "reasons": {str(i): r for i, r in self.reasons.items()},
            "infra": list(self.infra),
            "requeue": list(self.requeue),
            "warm": {str(i): src for i, src in self.warm.items()},
            "conditionTimes": {k: list(v) for k, v in self.condition_times.items()},
            "pendingSince": {str(i): t for i, t in self.pending_since.items()},
            "started": {str(i): t for i, t in self.started.items()},
            "waits": {str(i): r for i, r in self.waits.items()},
            "told": {str(i): list(k) for i, k in self.told.items()},
            "unstarted": list(self.unstarted),
            "stalled": self.stalled,
        }
        optional = {
            "fingerprint": self.fingerprint,
            "startEpoch": self.start_epoch,
            "completionTime": self.completion_time,
            "reference": self.reference,
            "referenceTime": self.reference_time,
            "converged": self.converged,
            "generator": self.generator,
            "exhausted": self.exhausted or None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    def begin(self, now: str, epoch: float) -> None:
        """A new search starts its clock; a resumed one keeps its own."""
        self.start_time = self.start_time or now
        self.start_epoch = epoch if self.start_epoch is None else self.start_epoch

    @classmethod
    def read(cls, experiment: Experiment) -> SearchState:
        return cls.from_dict(experiment._properties.get(PROPS) or {})

    def write(self, experiment: Experiment) -> None:
        """Before each save: the stores serialise `_properties` with the experiment."""
        experiment._properties[PROPS] = self.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchState:
        """Any saved version up to ours; a missing key takes its default."""
        version = int(data.get("version", 0))
        if version > VERSION:
            raise errors.NasopError(
                f"the search state was saved in format {version}; this nasop reads up to {VERSION}",
                hint="upgrade nasop to the version that saved this search",
            )
        phase = data.get("phase", spec.Phase.RUNNING.value)
        return cls(
            fingerprint=data.get("fingerprint"),
            start_time=data.get("startTime", ""),
            start_epoch=float(data["startEpoch"]) if "startEpoch" in data else None,
            phase=spec.Phase(phase),
            message=data.get("message") or "",
            completion_time=data.get("completionTime"),
            reasons={int(i): str(r) for i, r in (data.get("reasons") or {}).items()},
            infra=[int(i) for i in data.get("infra") or []],
            requeue=[int(i) for i in data.get("requeue") or []],
            warm={int(i): str(src) for i, src in (data.get("warm") or {}).items()},
            reference=dict(data["reference"]) if data.get("reference") else None,
            reference_time=data.get("referenceTime"),
            converged=data.get("converged") or None,
            exhausted=bool(data.get("exhausted")),
            generator=data.get("generator"),
            condition_times={k: list(v) for k, v in (data.get("conditionTimes") or {}).items()},
            pending_since={int(i): float(t) for i, t in (data.get("pendingSince") or {}).items()},
            started={int(i): float(t) for i, t in (data.get("started") or {}).items()},
            waits={int(i): str(r) for i, r in (data.get("waits") or {}).items()},
            told={int(i): [str(k) for k in ks] for i, ks in (data.get("told") or {}).items()},
            unstarted=[int(i) for i in data.get("unstarted") or []],
            stalled=data.get("stalled") or "",
        )


__all__ = ["PROPS", "VERSION", "SearchState"]
