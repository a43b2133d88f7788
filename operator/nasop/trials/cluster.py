"""The cluster side of trials: which kind of job a trial template runs as, and the few calls
the operator makes on those jobs outside TorchX (adoption, cancellation, the queue check).

`spec.trial.scheduler` picks the kind: `volcano` (a Volcano job, TorchX's `kubernetes`
scheduler) or `job` (a plain batch/v1 Job, nasop's `kubernetes_job` scheduler, admitted by Kueue
when `spec.trial.queue` names a LocalQueue). Everything else (runner, metrics, launch records)
is the same for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchx import runner as torchx_runner
from torchx.specs import AppState, is_terminal

from nasop import errors, spec
from nasop.trials import batchjob, harvest, volcano

KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"


@dataclass(frozen=True)
class JobKind:
    """One kind of trial job: its TorchX scheduler and its API resource."""

    scheduler: str
    group: str
    version: str
    plural: str
    state: Callable[[dict[str, Any]], AppState]
    pod_label: str  # the label its controller puts on the job's pods: the job's name
    finalizer: bool  # its pods carry nasop's harvest finalizer (harvest.py)


VOLCANO = JobKind(
    "kubernetes",
    "batch.volcano.sh",
    "v1alpha1",
    "jobs",
    volcano.job_state,
    "volcano.sh/job-name",
    False,  # Volcano keeps a finished job's pods until the job is deleted
)
BATCH = JobKind(
    batchjob.NAME,
    batchjob.GROUP,
    batchjob.VERSION,
    batchjob.PLURAL,
    lambda job: batchjob.job_state(job)[0],
    batchjob.JOB_NAME_LABEL,
    True,
)
KINDS = {"volcano": VOLCANO, "job": BATCH}


def kind_of(template: spec.TrialTemplate) -> JobKind:
    return KINDS[template.scheduler]


def scheduler_cfg(template: spec.TrialTemplate, namespace: str) -> dict[str, Any]:
    """The TorchX run config of the template's scheduler."""
    if template.scheduler == "job":
        return {"namespace": namespace, "queue": template.queue}
    return {"namespace": namespace, "queue": template.volcano_queue}


def runner_factory(
    client: Any,
    owner: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    watched: Any = None,
) -> torchx_runner.Runner:
    """A TorchX Runner whose two cluster schedulers use this client, owner and labels (and the
    operator's watch of the trial jobs and pods, `watched`: trials/watched.py)."""

    def make_volcano(session_name: str, **_: Any) -> volcano.VolcanoScheduler:
        return volcano.VolcanoScheduler(
            session_name, client=client, owner=owner, labels=labels, watched=watched
        )

    def make_job(session_name: str, **_: Any) -> batchjob.BatchJobScheduler:
        return batchjob.BatchJobScheduler(
            session_name, client=client, owner=owner, labels=labels, watched=watched
        )

    return torchx_runner.Runner(
        "nasop", scheduler_factories={VOLCANO.scheduler: make_volcano, BATCH.scheduler: make_job}
    )


def check_queue(client: Any, template: spec.TrialTemplate, namespace: str) -> None:
    """A Job naming a LocalQueue that does not exist would stay suspended forever: refuse it."""
    if template.scheduler != "job" or not template.queue:
        return
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    try:
        k8s.CustomObjectsApi(client).get_namespaced_custom_object(
            group=KUEUE_GROUP,
            version=KUEUE_VERSION,
            namespace=namespace,
            plural="localqueues",
            name=template.queue,
        )
    except ApiException as e:
        if e.status != 404:
            raise errors.BackendUnavailable(
                f"checking Kueue LocalQueue {template.queue}: {e}"
            ) from e
        raise errors.SpecError(
            f"spec.trial.queue: no Kueue LocalQueue {template.queue!r} in namespace "
            f"{namespace!r} (or Kueue is not installed)",
            hint="create the LocalQueue, or remove spec.trial.queue to run unqueued Jobs",
        ) from None


def check_metrics_source(template: spec.TrialTemplate) -> None:
    """TensorBoard files are read from the volume: in a cluster it must be named."""
    if template.logs.claim_name:
        return
    if template.metrics_format == "tensorboard":
        raise errors.SpecError(
            "spec.trial.metricsFormat: tensorboard needs spec.trial.logs.claimName in a cluster "
            "(the operator reads the TensorBoard files from that volume)",
            hint="use metricsFormat: nasop (stdout lines, no volume), or name a "
            "ReadWriteMany claim in spec.trial.logs.claimName",
        )


def harvester(
    client: Any, kind: JobKind, namespace: str, owner_uid: str, watched: Any = None
) -> harvest.Harvester:
    """The readers of this experiment's trial pods, and the release of their finalizers."""
    return harvest.Harvester(
        client,
        (kind.group, kind.version, kind.plural),
        kind.pod_label,
        namespace,
        owner_uid,
        kind.finalizer,
        watched,
    )


def _jobs(client: Any, kind: JobKind, namespace: str, selector: str) -> list[dict[str, Any]]:
    from kubernetes import client as k8s

    jobs = k8s.CustomObjectsApi(client).list_namespaced_custom_object(
        group=kind.group,
        version=kind.version,
        namespace=namespace,
        plural=kind.plural,
        label_selector=selector,
    )
    return list(jobs.get("items") or [])


def find_job(client: Any, kind: JobKind, namespace: str, experiment: str, trial: int) -> str | None:
    """The app handle of an existing job for this trial (a launch whose save was lost)."""
    items = _jobs(
        client, kind, namespace, f"{spec.EXPERIMENT_LABEL}={experiment},{spec.TRIAL_LABEL}={trial}"
    )
    if not items:
        return None
    return f"{kind.scheduler}://nasop/{namespace}:{items[0]['metadata']['name']}"


def find_pack(
    client: Any, kind: JobKind, namespace: str, experiment: str, trial: int
) -> tuple[str, list[int]] | None:
    """The app handle and member trial indices of an existing pack job holding this trial."""
    items = _jobs(
        client,
        kind,
        namespace,
        f"{spec.EXPERIMENT_LABEL}={experiment},{spec.GROUP}/member-{trial}=true",
    )
    if not items:
        return None
    prefix = f"{spec.GROUP}/member-"
    labels = items[0]["metadata"].get("labels") or {}
    members = sorted(int(k[len(prefix) :]) for k in labels if k.startswith(prefix))
    return f"{kind.scheduler}://nasop/{namespace}:{items[0]['metadata']['name']}", members


def cancel_jobs(
    client: Any, kinds: list[JobKind], namespace: str, experiment: str, owner_uid: str
) -> list[str]:
    """Delete the unfinished jobs of a deleted experiment; return their names.

    Only jobs owned by that experiment (by uid): a new experiment of the same name keeps its own.
    Finished jobs are left to the garbage collector. Idempotent (a job already gone is skipped).
    """
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    api = k8s.CustomObjectsApi(client)
    cancelled = []
    for kind in kinds:
        for job in _jobs(client, kind, namespace, f"{spec.EXPERIMENT_LABEL}={experiment}"):
            meta = job["metadata"]
            if not any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []):
                continue
            if is_terminal(kind.state(job)):
                continue
            try:
                api.delete_namespaced_custom_object(
                    group=kind.group,
                    version=kind.version,
                    namespace=namespace,
                    plural=kind.plural,
                    name=meta["name"],
                    propagation_policy="Background",
                )
            except ApiException as e:
                if e.status != 404:
                    raise
                continue
            cancelled.append(meta["name"])
    return cancelled


__all__ = [
    "BATCH",
    "VOLCANO",
    "JobKind",
    "cancel_jobs",
    "check_metrics_source",
    "check_queue",
    "find_job",
    "find_pack",
    "harvester",
    "kind_of",
    "runner_factory",
    "scheduler_cfg",
]
