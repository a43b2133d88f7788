"""The status block the engine reports: the same for `nasop run` and the operator."""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any, Literal

from pydantic import Field

from nasop.spec.base import ANY_VALUE, WireModel


class Phase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"


class TrialCounts(WireModel):
    total: int = Field(default=0, description="Trials created.")
    pending: int = Field(
        default=0, description="Trials launched whose pods do not run yet (waiting to start)."
    )
    running: int = Field(default=0, description="Trials whose pods run (started, not finished).")
    completed: int = Field(default=0, description="Trials that finished with data.")
    failed: int = Field(default=0, description="Trials that failed.")
    early_stopped: int = Field(default=0, description="Trials stopped early.")
    warm_started: int = Field(
        default=0, description="Completed trials copied from spec.warmStart (not run here)."
    )


class ParetoPoint(WireModel):
    trial: int = Field(description="Trial index.")
    job: str | None = Field(default=None, description="Scheduler app handle of the trial.")
    parameters: dict[str, Any] = Field(
        description="The trial's parameters.", json_schema_extra=ANY_VALUE
    )
    metrics: dict[str, float] = Field(description="Observed objective and constraint metrics.")


class Condition(WireModel):
    """A Kubernetes condition: the type is a stable name, only the status changes."""

    type: str = Field(description="Ready, Reconciling, Stalled or SpecAccepted.")
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = Field(
        default="", description="RFC 3339 time of the last change of `status`."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )


class NASExperimentStatus(WireModel):
    """What the engine reports: the same block for `nasop run` and the operator."""

    phase: Phase = Field(default=Phase.PENDING, description="Lifecycle phase.")
    observed_generation: int | None = Field(default=None, description="Last spec generation seen.")
    message: str | None = Field(default=None, description="Why the phase is what it is.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trial counts by state.")
    generator: str | None = Field(default=None, description="Node that produced the last trial.")
    hypervolume: float | None = Field(default=None, description="Hypervolume of the front.")
    objective_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Reference point used for the hypervolume."
    )
    inferred_thresholds: list[str] = Field(
        default_factory=list,
        description="Objectives without a spec threshold, whose objectiveThresholds value is "
        "inferred from the observed front (its worst value less 10% of its range).",
    )
    pareto_size: int = Field(default=0, description="Number of points on the Pareto front.")
    pareto_front: list[ParetoPoint] = Field(
        default_factory=list, description="Observed non-dominated trials."
    )
    start_time: str | None = Field(default=None, description="When the search started.")
    completion_time: str | None = Field(default=None, description="When the search ended.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Reconciling, Stalled (kstatus) and SpecAccepted."
    )


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "Condition",
    "NASExperimentStatus",
    "ParetoPoint",
    "Phase",
    "TrialCounts",
    "now_rfc3339",
]
