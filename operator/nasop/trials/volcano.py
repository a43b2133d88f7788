"""TorchX's kubernetes scheduler, made safe for an operator.

TorchX 0.7.0 reads only ~/.kube/config, crashes on Volcano's `Completing` phase (KeyError), reports
a deleted job as an exception rather than "no such app", and cannot label or own the jobs it
creates. This subclass takes an API client built from the operator's own configuration, maps every
Volcano phase, returns None for a vanished job, and stamps each job with nasop labels and an
ownerReference to its NASExperiment, so that deleting the experiment garbage-collects its jobs.
"""

from __future__ import annotations

import copy
from typing import Any

from torchx import runner as torchx_runner
from torchx.schedulers import kubernetes_scheduler as ks
from torchx.schedulers.api import DescribeAppResponse
from torchx.specs import AppDef, AppDryRunInfo, AppState, is_terminal

from nasop import spec

# Every Volcano job phase (volcano.sh/apis batch/v1alpha1 JobPhase): anything not finished is
# running, so a queued or restarting job is never taken for a failed one.
VOLCANO_PHASES: dict[str, AppState] = {
    "Pending": AppState.PENDING,
    "Inqueue": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Restarting": AppState.RUNNING,
    "Completing": AppState.RUNNING,
    "Terminating": AppState.RUNNING,
    "Aborting": AppState.RUNNING,
    "Completed": AppState.SUCCEEDED,
    "Aborted": AppState.CANCELLED,
    "Terminated": AppState.FAILED,
    "Failed": AppState.FAILED,
}


def job_state(job: dict[str, Any]) -> AppState:
    """A job with no status yet is UNKNOWN (not failed); an unknown phase is RUNNING."""
    phase = ((job.get("status") or {}).get("state") or {}).get("phase")
    if not phase:
        return AppState.UNKNOWN
    return VOLCANO_PHASES.get(phase, AppState.RUNNING)


class VolcanoScheduler(ks.KubernetesScheduler):
    """One per experiment: knows the owner to stamp on every job it creates."""

    def __init__(
        self,
        session_name: str,
        client: Any,
        owner: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(session_name, client=client)
        self.owner = owner
        self.labels = dict(labels or {})

    def _submit_dryrun(self, app: AppDef, cfg: Any) -> AppDryRunInfo[ks.KubernetesJob]:
        info = super()._submit_dryrun(app, cfg)
        resource = info.request.resource
        meta = resource.setdefault("metadata", {})  # type: ignore[union-attr]
        labels = {**self.labels, **{k: v for k, v in app.metadata.items() if k.startswith(spec.GROUP)}}
        meta.setdefault("labels", {}).update(labels)  # type: ignore[union-attr]
        if self.owner:
            meta["ownerReferences"] = [copy.deepcopy(self.owner)]  # type: ignore[index]
        for task in resource["spec"]["tasks"]:  # type: ignore[index]
            pod_meta = task["template"].metadata  # a V1PodTemplateSpec, not a dict
            pod_meta.labels = {**(pod_meta.labels or {}), **labels}
        return info

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        """None when the job is gone; never raises on an unexpected phase."""
        from kubernetes.client.rest import ApiException

        namespace, name = app_id.split(":")
        try:
            job = self._custom_objects_api().get_namespaced_custom_object(
                group="batch.volcano.sh", version="v1alpha1", namespace=namespace,
                plural="jobs", name=name,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        state = job_state(job)
        msg = ((job.get("status") or {}).get("state") or {}).get("message") or ""
        return DescribeAppResponse(app_id=app_id, state=state, msg=msg)

    def _cancel_existing(self, app_id: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            super()._cancel_existing(app_id)
        except ApiException as e:
            if e.status != 404:  # already gone: cancel is idempotent
                raise


def runner_factory(
    client: Any, owner: dict[str, Any] | None = None, labels: dict[str, str] | None = None
) -> torchx_runner.Runner:
    """A TorchX Runner whose `kubernetes` scheduler uses this client and owner."""

    def make(session_name: str, **_: Any) -> VolcanoScheduler:
        return VolcanoScheduler(session_name, client=client, owner=owner, labels=labels)

    return torchx_runner.Runner("nasop", scheduler_factories={"kubernetes": make})


def find_job(client: Any, namespace: str, experiment: str, trial: int) -> str | None:
    """The app handle of an existing job for this trial (a launch whose save was lost)."""
    from kubernetes import client as k8s

    jobs = k8s.CustomObjectsApi(client).list_namespaced_custom_object(
        group="batch.volcano.sh", version="v1alpha1", namespace=namespace, plural="jobs",
        label_selector=f"{spec.EXPERIMENT_LABEL}={experiment},{spec.TRIAL_LABEL}={trial}",
    )
    items = jobs.get("items") or []
    if not items:
        return None
    return f"kubernetes://nasop/{namespace}:{items[0]['metadata']['name']}"


def find_pack(client: Any, namespace: str, experiment: str, trial: int
              ) -> tuple[str, list[int]] | None:
    """The app handle and member trial indices of an existing pack job holding this trial."""
    from kubernetes import client as k8s

    jobs = k8s.CustomObjectsApi(client).list_namespaced_custom_object(
        group="batch.volcano.sh", version="v1alpha1", namespace=namespace, plural="jobs",
        label_selector=f"{spec.EXPERIMENT_LABEL}={experiment},{spec.GROUP}/member-{trial}=true",
    )
    items = jobs.get("items") or []
    if not items:
        return None
    prefix = f"{spec.GROUP}/member-"
    labels = items[0]["metadata"].get("labels") or {}
    members = sorted(int(k[len(prefix):]) for k in labels if k.startswith(prefix))
    return f"kubernetes://nasop/{namespace}:{items[0]['metadata']['name']}", members


def cancel_jobs(client: Any, namespace: str, experiment: str, owner_uid: str) -> list[str]:
    """Delete the unfinished jobs of a deleted experiment; return their names.

    Only jobs owned by that experiment (by uid): a new experiment of the same name keeps its own.
    Finished jobs are left to the garbage collector. Idempotent (a job already gone is skipped).
    """
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    api = k8s.CustomObjectsApi(client)
    jobs = api.list_namespaced_custom_object(
        group="batch.volcano.sh", version="v1alpha1", namespace=namespace, plural="jobs",
        label_selector=f"{spec.EXPERIMENT_LABEL}={experiment}",
    )
    cancelled = []
    for job in jobs.get("items") or []:
        meta = job["metadata"]
        if not any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []):
            continue
        if is_terminal(job_state(job)):
            continue
        try:
            api.delete_namespaced_custom_object(
                group="batch.volcano.sh", version="v1alpha1", namespace=namespace, plural="jobs",
                name=meta["name"], propagation_policy="Background",
            )
        except ApiException as e:
            if e.status != 404:
                raise
            continue
        cancelled.append(meta["name"])
    return cancelled


__all__ = ["VolcanoScheduler", "cancel_jobs", "find_job", "find_pack", "job_state",
           "runner_factory"]
