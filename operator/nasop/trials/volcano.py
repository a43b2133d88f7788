"""TorchX's kubernetes scheduler, made safe for an operator.

TorchX 0.7.0 reads only ~/.kube/config, crashes on Volcano's `Completing` phase (KeyError), reports
a deleted job as an exception rather than "no such app", and cannot label or own the jobs it
creates. This subclass takes an API client built from the operator's own configuration, maps every
Volcano phase, returns None for a vanished job, and stamps each job with nasop labels and an
ownerReference to its NASExperiment, so that deleting the experiment garbage-collects its jobs.

Trial pods get no service-account token (``automountServiceAccountToken: false``): a trial
reports through its log and termination message and needs no access to the API server.

It also sets ``minAvailable`` (every task must succeed: for a distributed trial of N replicas,
the gang of N pods that Volcano starts together or not at all), and for several replicas the
policy ``PodFailed -> TerminateJob``, so one failed replica fails the trial at once. TorchX
leaves ``minAvailable`` 0 for Volcano's admission webhook to default; a job that reaches the
controller at 0 (webhook absent or failing open) counts 0 successes as enough and reports a
failed trial pod as ``Completed``.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from torchx.schedulers import kubernetes_scheduler as ks
from torchx.schedulers.api import DescribeAppResponse
from torchx.specs import NONE, AppDef, AppDryRunInfo, AppState, ReplicaStatus, RoleStatus

from nasop import spec
from nasop.trials import stops, waiting
from nasop.trials.custom_objects import get_or_none
from nasop.trials.watched import cached_job

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


# Without it a replica whose rank failed leaves the others waiting (torchrun's exit barrier, 5
# minutes) before the job fails; Kubeflow's PyTorchJob also fails at the first failed worker.
TERMINATE_ON_FAILURE = {"event": "PodFailed", "action": "TerminateJob"}

# Volcano's pod phases in status.taskStatusCount, as TorchX's describe maps them
TASK_PHASES: dict[str, AppState] = {
    "Pending": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Succeeded": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
    "Unknown": AppState.UNKNOWN,
}


def replica_states(job: dict[str, Any]) -> list[RoleStatus]:
    """Each task's (one per replica, `<role>-<index>`) state, from `status.taskStatusCount`:
    a failed replica of a distributed trial is named in the trial's failure reason."""
    roles: dict[str, RoleStatus] = {}
    counts = (job.get("status") or {}).get("taskStatusCount") or {}
    for task, count in sorted(counts.items()):
        role, _, index = task.rpartition("-")
        phases = count.get("phase") or {}
        if not role or not index.isdigit() or not phases:
            continue
        # a task with a failed pod is failed, whatever its other pods did
        state = (
            AppState.FAILED
            if phases.get("Failed")
            else TASK_PHASES.get(next(iter(phases)), AppState.UNKNOWN)
        )
        roles.setdefault(role, RoleStatus(role, [])).replicas.append(
            ReplicaStatus(id=int(index), role=role, state=state, hostname="")
        )
    return list(roles.values())


def gang_replica_states(job: dict[str, Any], pods: list[Any]) -> list[RoleStatus]:
    """Every replica of a terminated gang, the failed ones from its pods (``V1Pod``s): when one
    replica fails, ``TerminateJob`` deletes the others and keeps the failed pod, and the
    terminated job keeps no ``taskStatusCount``. A replica is a task ``<role>-<index>`` and its
    pod carries TorchX's ``replica-id`` label; a failed pod's container end is its replica's
    error (``exit code 137 (SIGKILL)``); the others were ended by the gang (cancelled)."""
    failed: dict[tuple[str, int], str] = {}
    for pod in pods:
        labels = pod.metadata.labels or {}
        role, index = labels.get(ks.LABEL_ROLE_NAME), labels.get(ks.LABEL_REPLICA_ID, "")
        if role and index.isdigit() and (pod.status and pod.status.phase) == "Failed":
            failed[(role, int(index))] = _container_exit(pod)
    roles: dict[str, RoleStatus] = {}
    for task in (job.get("spec") or {}).get("tasks") or []:
        role, _, index = str(task.get("name", "")).rpartition("-")
        if not role or not index.isdigit():
            continue
        error = failed.get((role, int(index)))
        roles.setdefault(role, RoleStatus(role, [])).replicas.append(
            ReplicaStatus(
                id=int(index),
                role=role,
                state=AppState.CANCELLED if error is None else AppState.FAILED,
                hostname="",
                structured_error_msg=error or NONE,
            )
        )
    return list(roles.values()) if failed else []


def _container_exit(pod: Any) -> str:
    for container in pod.status.container_statuses or []:
        ended = container.state and container.state.terminated
        if ended:
            code = ended.exit_code
            signal = f"signal {code - 128}" if code > 128 else ""
            signal = {"signal 9": "SIGKILL", "signal 15": "SIGTERM"}.get(signal, signal)
            words = ", ".join(w for w in (signal, ended.reason or "") if w)
            return f"pod {pod.metadata.name} exited with code {code}" + (
                f" ({words})" if words else ""
            )
    return f"pod {pod.metadata.name} failed"


def job_state(job: dict[str, Any]) -> AppState:
    """A job with no status yet is UNKNOWN (not failed); an unknown phase is RUNNING."""
    phase = ((job.get("status") or {}).get("state") or {}).get("phase")
    if not phase:
        return AppState.UNKNOWN
    return VOLCANO_PHASES.get(phase, AppState.RUNNING)


REASON_SECONDS = 5.0


class VolcanoScheduler(ks.KubernetesScheduler):
    """One per experiment: knows the owner to stamp on every job it creates."""

    def __init__(
        self,
        session_name: str,
        client: Any,
        owner: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        watched: Any = None,
    ) -> None:
        super().__init__(session_name, client=client)
        self.owner = owner
        self.labels = dict(labels or {})
        self.watched = watched  # the operator's watch of the trial jobs and pods (watched.py)
        #: app_id -> (when asked, the reason): why a job waits, asked once it has waited
        #: REASON_SECONDS, then at most every REASON_SECONDS (its PodGroup: one or two GETs
        #: per pending trial, hundreds of experiments: the API server's load, measured by
        #: bench/operator_scale.py; a job pending for a moment after its creation is normal)
        self._reasons: dict[str, tuple[float, str]] = {}

    def _submit_dryrun(self, app: AppDef, cfg: Any) -> AppDryRunInfo[ks.KubernetesJob]:
        info = super()._submit_dryrun(app, cfg)
        resource = info.request.resource
        meta = resource.setdefault("metadata", {})
        own = {k: v for k, v in app.metadata.items() if k.startswith(spec.GROUP)}
        labels = {**self.labels, **own}
        meta.setdefault("labels", {}).update(labels)
        if self.owner:
            meta["ownerReferences"] = [copy.deepcopy(self.owner)]
        tasks = resource["spec"]["tasks"]
        resource["spec"].setdefault("minAvailable", sum(t["replicas"] for t in tasks))
        if len(tasks) > 1:  # a distributed trial: one failed pod ends the whole gang at once
            resource["spec"].setdefault("policies", [TERMINATE_ON_FAILURE])
        for task in tasks:
            pod_meta = task["template"].metadata  # a V1PodTemplateSpec, not a dict
            pod_meta.labels = {**(pod_meta.labels or {}), **labels}
            # trials report through their log and termination message: they hold no credentials
            task["template"].spec.automount_service_account_token = False
            if app.metadata.get(stops.APP_METADATA_KEY):  # a pack: its members' stop requests
                stops.mount(task["template"].spec, app.metadata[stops.APP_METADATA_KEY])
        return info

    def _custom_objects_api(self) -> Any:
        """TorchX's client for the job it creates; the job created is also told to the
        operator's watch, so that the reads right after the launch need no GET."""
        api = super()._custom_objects_api()
        if self.watched is None:
            return api
        create, watched = api.create_namespaced_custom_object, self.watched

        def create_and_tell(*args: Any, **kwargs: Any) -> Any:
            created = create(*args, **kwargs)
            if isinstance(created, dict):
                watched.created(created)
            return created

        api.create_namespaced_custom_object = create_and_tell
        return api

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        """None when the job is gone; never raises on an unexpected phase."""
        namespace, name = app_id.split(":")
        job = cached_job(self.watched, namespace, name)
        if job is None:  # no watch, or not seen by it (yet): ask the API server
            api = self._custom_objects_api()
            job = get_or_none(api, "batch.volcano.sh", "v1alpha1", namespace, "jobs", name)
        if job is None:
            return None
        state = job_state(job)
        msg = ((job.get("status") or {}).get("state") or {}).get("message") or ""
        if state in (AppState.PENDING, AppState.UNKNOWN):  # say why, in Volcano's words
            msg = self._reason(app_id, job) or msg
        else:
            self._reasons.pop(app_id, None)
        roles = replica_states(job)
        if state == AppState.FAILED and len((job.get("spec") or {}).get("tasks") or []) > 1:
            failed = [r for role in roles for r in role.replicas if r.state == AppState.FAILED]
            if not failed:  # a terminated gang keeps only its failed pod: ask the pods
                roles = gang_replica_states(job, self._pods(namespace, name)) or roles
        return DescribeAppResponse(app_id=app_id, state=state, msg=msg, roles_statuses=roles)

    def _pods(self, namespace: str, name: str) -> list[Any]:
        from kubernetes import client as k8s

        pods = k8s.CoreV1Api(self._api_client()).list_namespaced_pod(
            namespace, label_selector=f"volcano.sh/job-name={name}"
        )
        return list(pods.items)

    def _reason(self, app_id: str, job: dict[str, Any]) -> str:
        now = time.monotonic()
        asked = self._reasons.get(app_id)
        if asked is None:  # a job that has just been created waits for nothing in particular:
            asked = self._reasons[app_id] = (now, "")  # asked once it has waited REASON_SECONDS
        if now - asked[0] >= REASON_SECONDS:
            why = waiting.volcano_reason(self._api_client(), job, self.watched)
            asked = self._reasons[app_id] = (now, why)
        return asked[1]

    def _cancel_existing(self, app_id: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            super()._cancel_existing(app_id)
        except ApiException as e:
            if e.status != 404:  # already gone: cancel is idempotent
                raise


__all__ = ["VolcanoScheduler", "gang_replica_states", "job_state", "replica_states"]
