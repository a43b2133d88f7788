"""How one trial is launched: image, command, resources, log volume, scheduler and packing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nasop.spec.base import WireModel
from nasop.spec.parsing import parse_duration


class Resources(WireModel):
    cpu: float = Field(default=1, gt=0, description="CPU cores per trial.")
    mem_mb: int = Field(default=2048, ge=64, alias="memMB", description="Memory per trial, MiB.")
    gpu: int = Field(default=0, ge=0, description="GPUs per trial.")


class Logs(WireModel):
    claim_name: str | None = Field(
        default=None,
        description="Optional PersistentVolumeClaim for the trials' TensorBoard files (for "
        "people), mounted by every trial; needed only with metricsFormat: tensorboard or "
        "packs in a cluster. Metrics travel through the pod's log and termination message.",
    )
    mount_path: str = Field(default="/logs", description="Where the log volume is mounted.")


class Pack(WireModel):
    """Trial packing: several proposed trials trained together by one process (one pod)."""

    max_trials: int = Field(
        ge=1,
        le=1024,
        alias="maxTrials",
        description="Most trials in one pack; the trainer gets them in NASOP_PACK.",
    )
    group_by: list[str] = Field(
        default_factory=list,
        alias="groupBy",
        description="Parameters the trials of one pack must agree on (e.g. batch_size).",
    )


class TrialTemplate(WireModel):
    """How one trial is launched (the trial contract in DESIGN.md)."""

    image: str = Field(
        default="nasop-trainer:0.1.0", description="Trainer image (cluster runs only)."
    )
    command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "nasop_trainer"],
        description="Entrypoint; parameters are appended as --<name>=<value>.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments before the parameters.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    resources: Resources = Field(default_factory=Resources, description="Per-trial resources.")
    logs: Logs = Field(
        default_factory=Logs, description="An optional volume for TensorBoard files."
    )
    metrics_format: Literal["nasop", "katib", "tensorboard"] = Field(
        default="nasop",
        alias="metricsFormat",
        description="How a trial reports its metrics (docs/contract.md). nasop: 'NASOP1 {json}' "
        "lines on stdout and final values in the termination message. katib: Katib's StdOut "
        "convention, 'name=value' pairs on stdout (a trainer written for Katib runs "
        "unchanged). tensorboard: TensorBoard scalars in logs.claimName, read by the operator "
        "(for images that only write TensorBoard files).",
    )
    scheduler: Literal["volcano", "job"] = Field(
        default="volcano",
        description="How a cluster runs trials: a Volcano job (needs Volcano), or a plain "
        "batch/v1 Job (admitted by Kueue when queue names a LocalQueue).",
    )
    queue: str | None = Field(
        default=None,
        description="volcano: the Volcano queue (default 'default'). job: the Kueue LocalQueue "
        "of the trial's namespace (the Job is created suspended for Kueue to admit); unset: "
        "an unqueued Job.",
    )

    start_timeout: str = Field(
        default="30m",
        alias="startTimeout",
        description="How long a launched trial may wait for its pods to run (scheduling, "
        "image pull, queue admission) before it fails with the reason it waited (an "
        "infrastructure failure: not counted against budget.maxFailedTrials). The search is "
        "Stalled when no trial has started for 5m (or half this, if shorter) while trials wait.",
    )

    pack: Pack | None = Field(
        default=None,
        description="Train up to pack.maxTrials trials in one process (NASOP_PACK); "
        "budget.parallelism then counts packs.",
    )

    replicas: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Pods per trial (data-parallel, docs/distributed.md). Above 1 the trial "
        "runs as torchrun across all its pods (c10d rendezvous on the first pod's host), "
        "gang-scheduled: with scheduler: volcano one Volcano job whose minAvailable is "
        "replicas, so all its pods start together or none does; with scheduler: job an "
        "Indexed Job of replicas pods that Kueue (trial.queue) admits whole or not at all. "
        "resources are per pod.",
    )
    procs_per_replica: int = Field(
        default=1,
        ge=1,
        le=256,
        alias="procsPerReplica",
        description="Processes per pod (e.g. one per GPU: resources.gpu). Above 1 (or with "
        "replicas above 1) the trial runs under torchrun with replicas x procsPerReplica "
        "ranks; only global rank 0 reports metrics.",
    )

    @property
    def world_size(self) -> int:
        """Ranks of one trial: replicas x procsPerReplica (1: a plain, single-process trial)."""
        return self.replicas * self.procs_per_replica

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @model_validator(mode="after")
    def _pack_is_single_process(self) -> TrialTemplate:
        if self.pack is not None and self.distributed:
            raise ValueError(
                f"trial.pack cannot be combined with trial.replicas={self.replicas} / "
                f"trial.procsPerReplica={self.procs_per_replica}: a pack trains several trials "
                "in one process, a distributed trial trains one model over several; remove "
                "trial.pack, or set trial.replicas and trial.procsPerReplica to 1"
            )
        return self

    @property
    def volcano_queue(self) -> str:
        return self.queue or "default"

    @property
    def start_timeout_seconds(self) -> float:
        return parse_duration(self.start_timeout)

    @field_validator("start_timeout")
    @classmethod
    def _start_timeout_parses(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"{v!r} must be a positive duration such as 30m")
        return v

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("command must name a program, e.g. [python, -m, nasop_trainer]")
        return v


__all__ = ["Logs", "Pack", "Resources", "TrialTemplate"]
