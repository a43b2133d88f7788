"""A TorchX scheduler that runs an app as a plain `batch/v1` Job, for clusters without Volcano.

TorchX 0.7.0's `kubernetes` scheduler creates only Volcano jobs. Here the pod is built by TorchX's
own `role_to_pod` (resources, mounts, environment) and wrapped in a Job that nasop can judge:
`backoffLimit: 0` (nasop decides retries), the pod finalizer `nasop.dev/harvest` (the pod
stays until the operator has read its output: harvest.py), a pod failure policy that fails the
Job at once when its pod is evicted or preempted (so that is told apart from a trainer's
non-zero exit), and, with a Kueue LocalQueue, the `kueue.x-k8s.io/queue-name` label and
`suspend: true` (Kueue unsuspends the Job when it admits it).

A distributed trial (one role of R > 1 replicas: TorchX's `dist.ddp` form, trials/appdef.py) is
one Indexed Job of R pods (`completions` = `parallelism` = R), as Kubeflow's JobSet builds each
of its jobs: Kueue admits a Job as one workload of R pods, so it admits the whole trial or none
of it; `backoffLimit: 0` fails the Job at the first failed pod, and the Job controller then
stops the others. Pod `k` is named `<job>-k` (the Indexed Job's hostname) in the subdomain of one
headless Service per experiment (selecting its pods by the experiment-uid label, owned by the
NASExperiment), so every replica reaches the rank-0 pod at `<job>-0.<service>`: TorchX's rank-0
variable `TORCHX_RANK0_HOST` holds that name. Registered as TorchX scheduler
`kubernetes_job` (pyproject entry points); the operator builds it with its own API client, owner
and labels.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from torchx.schedulers import kubernetes_scheduler as ks
from torchx.schedulers.api import DescribeAppResponse, ListAppResponse, Scheduler, Stream
from torchx.schedulers.ids import make_unique
from torchx.specs import AppDef, AppDryRunInfo, AppState, macros, runopts
from torchx.specs.api import ReplicaStatus, RoleStatus

from nasop import spec
from nasop.trials import stops, waiting
from nasop.trials.watched import cached_job

log = logging.getLogger(__name__)

NAME = "kubernetes_job"
GROUP, VERSION, PLURAL = "batch", "v1", "jobs"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
HARVEST_FINALIZER = f"{spec.GROUP}/harvest"  # removed by harvest.py once the output is read
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pod: its index
RANK0_ENV = "TORCHX_RANK0_HOST"  # TorchX's rank0_env macro for this scheduler (trials/appdef.py)
UID_LABEL = f"{spec.GROUP}/experiment-uid"  # on every trial pod (the operator's labels)

#: Terminal Job conditions (status "True") by type, then by reason; the first match wins.
#: FailureTarget/SuccessCriteriaMet come first on Kubernetes >= 1.31, while pods still terminate.
#: A pod evicted or preempted fails the Job through the pod failure policy (reason
#: PodFailurePolicy): not the trainer's fault, so CANCELLED, which nasop retries.
TERMINAL: dict[str, dict[str, AppState]] = {
    "Complete": {"*": AppState.SUCCEEDED},
    "SuccessCriteriaMet": {"*": AppState.SUCCEEDED},
    "Failed": {"PodFailurePolicy": AppState.CANCELLED, "*": AppState.FAILED},
    "FailureTarget": {"PodFailurePolicy": AppState.CANCELLED, "*": AppState.FAILED},
}

#: A pod's phase as the state of the replica it runs.
POD_PHASES: dict[str, AppState] = {
    "Pending": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Succeeded": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
}

#: Why a failed Job failed, in words a user can act on.
FAILURE_REASONS: dict[str, str] = {
    "DeadlineExceeded": "the trial ran past its activeDeadlineSeconds (budget.maxDuration)",
    "BackoffLimitExceeded": "the trial's pod failed",
    "PodFailurePolicy": "the trial's pod was evicted or preempted",
}


def job_state(job: dict[str, Any]) -> tuple[AppState, str]:
    """A Job's TorchX state and a message; never raises on an unknown condition.

    Suspended (waiting for Kueue, or preempted by it and requeued) and not yet started are
    PENDING; pods active but none ready are PENDING; a Job being deleted is CANCELLED.
    """
    status = job.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    for ctype, by_reason in TERMINAL.items():
        for cond in conditions:
            if cond.get("type") == ctype:
                reason = cond.get("reason") or ""
                state = by_reason.get(reason, by_reason["*"])
                words = FAILURE_REASONS.get(reason, reason)
                message = "; ".join(m for m in (words, cond.get("message") or "") if m)
                return state, message if state is not AppState.SUCCEEDED else ""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return AppState.CANCELLED, "the Job is being deleted"
    suspended = any(c.get("type") == "Suspended" for c in conditions)
    if suspended or (job.get("spec") or {}).get("suspend"):
        return AppState.PENDING, "suspended: waiting to be admitted (Kueue)"
    if status.get("active"):
        if status.get("ready"):
            return AppState.RUNNING, ""
        return AppState.PENDING, "pod not ready"
    if status.get("succeeded") or status.get("failed"):
        return AppState.RUNNING, "finishing"
    return AppState.PENDING, ""


class JobOpts(TypedDict, total=False):
    namespace: str
    queue: str | None
    service_account: str | None
    active_deadline_seconds: int | None


@dataclass
class BatchJobRequest:
    resource: dict[str, Any]
    service: dict[str, Any] | None = None  # the headless Service a distributed trial needs

    def __str__(self) -> str:
        import yaml

        return yaml.safe_dump(ks.sanitize_for_serialization(self.resource), sort_keys=False)


def app_to_job(
    app: AppDef,
    *,
    name: str | None = None,
    queue: str | None,
    service_account: str | None = None,
    active_deadline_seconds: int | None = None,
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """The Job of a one-role app (a nasop trial; R replicas: an Indexed Job of R pods whose
    subdomain is `service`, required then); pure, for tests to assert on."""
    if len(app.roles) != 1:
        raise ValueError(
            f"{NAME} runs one role; {app.name} has {[(r.name, r.num_replicas) for r in app.roles]}"
        )
    replicas = app.roles[0].num_replicas
    if replicas > 1 and not service:
        raise ValueError(f"{app.name}: {replicas} replicas need the headless service's name")
    name = name or ks.normalize_str(make_unique(app.name))
    # TorchX's macros (a distributed trial's `${app_id}`), as its kubernetes scheduler applies them
    values = macros.Values(img_root="", app_id=name, replica_id="0", rank0_env=RANK0_ENV)
    role = values.apply(app.roles[0])  # a copy
    if replicas > 1:  # every replica finds rank 0 by its Indexed Job hostname
        role.env = {**role.env, RANK0_ENV: f"{name}-0.{service}"}
    pod = ks.role_to_pod(ks.normalize_str(f"{role.name}-0"), role, service_account)
    pod.spec.automount_service_account_token = False  # a trial needs no API credentials
    if replicas > 1:
        pod.spec.subdomain = service
    if app.metadata.get(stops.APP_METADATA_KEY):  # a pack: its members' stop requests
        stops.mount(pod.spec, app.metadata[stops.APP_METADATA_KEY])
    # the pod stays until the operator has read its output (harvest.py removes this)
    pod.metadata.finalizers = [HARVEST_FINALIZER]
    job_labels = {
        **(labels or {}),
        **{k: v for k, v in app.metadata.items() if k.startswith(spec.GROUP)},
    }
    pod.metadata.labels = {
        **ks.pod_labels(app=app, role_idx=0, role=role, replica_id=0, app_id=name),
        **job_labels,
    }
    if replicas > 1:  # one template for every replica: its index is the Job's INDEX_LABEL
        pod.metadata.labels.pop(ks.LABEL_REPLICA_ID, None)
    meta: dict[str, Any] = {"name": name, "labels": dict(job_labels)}
    if queue:
        meta["labels"][QUEUE_LABEL] = queue
    if owner:
        meta["ownerReferences"] = [copy.deepcopy(owner)]
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # nasop decides retries
        "completions": replicas,
        "parallelism": replicas,
        # an evicted or preempted pod fails the Job with reason PodFailurePolicy (retried)
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                }
            ]
        },
        "template": pod,
    }
    if replicas > 1:
        job_spec["completionMode"] = "Indexed"
    if queue:
        job_spec["suspend"] = True  # Kueue admits it by unsuspending
    if active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = max(1, int(active_deadline_seconds))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def service_name(owner: dict[str, Any] | None, job_name: str) -> str:
    """The headless Service of an experiment's distributed trials (a DNS-1035 label; the uid's
    head tells apart an experiment deleted and created again under its name, whose old Service
    may not be collected yet); without an owner (TorchX used directly) the job's own."""
    if not owner:
        return job_name
    base = re.sub(r"[^a-z0-9-]", "-", f"nasop-{owner['name']}".lower())[:54].rstrip("-")
    return f"{base}-{str(owner['uid'])[:8]}"


def headless_service(
    name: str,
    *,
    owner: dict[str, Any] | None,
    job_name: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The headless Service whose subdomain names a distributed trial's pods: one per experiment
    (its pods by experiment uid, owned by the NASExperiment, so it goes with it), or one per job
    without an owner. Not-ready pods are published: the rendezvous comes before readiness."""
    selector = {UID_LABEL: owner["uid"]} if owner else {JOB_NAME_LABEL: job_name}
    meta: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if owner:
        meta["ownerReferences"] = [copy.deepcopy(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": True},
    }


class BatchJobScheduler(Scheduler[JobOpts]):
    """Runs each app as one `batch/v1` Job; app ids are `namespace:name`."""

    def __init__(
        self,
        session_name: str,
        client: Any = None,
        owner: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        watched: Any = None,
    ) -> None:
        super().__init__(NAME, session_name)
        self._client = client
        self.owner = owner
        self.labels = dict(labels or {})
        self.watched = watched  # the operator's watch of the trial jobs and pods (watched.py)
        self._services: set[tuple[str, str]] = set()  # (namespace, name) created or found

    def _api_client(self) -> Any:
        """The client given, or one from ~/.kube/config (as TorchX's own scheduler does)."""
        if self._client is None:
            from kubernetes import client, config

            configuration = client.Configuration()
            config.load_kube_config(client_configuration=configuration)
            self._client = client.ApiClient(configuration)
        return self._client

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self._api_client())

    def _run_opts(self) -> runopts:
        opts = runopts()
        opts.add("namespace", type_=str, help="Kubernetes namespace of the Job", default="default")
        opts.add(
            "queue",
            type_=str,
            help="Kueue LocalQueue (the Job is created suspended); empty: an unqueued Job",
            default=None,
        )
        opts.add("service_account", type_=str, help="ServiceAccount of the pod", default=None)
        opts.add(
            "active_deadline_seconds",
            type_=int,
            help="Seconds the Job may run before Kubernetes kills it",
            default=None,
        )
        return opts

    def _submit_dryrun(self, app: AppDef, cfg: JobOpts) -> AppDryRunInfo[BatchJobRequest]:
        name = ks.normalize_str(make_unique(app.name))
        service = None
        if len(app.roles) == 1 and app.roles[0].num_replicas > 1:
            service = headless_service(
                service_name(self.owner, name), owner=self.owner, job_name=name, labels=self.labels
            )
        resource = app_to_job(
            app,
            name=name,
            queue=cfg.get("queue"),
            service_account=cfg.get("service_account"),
            active_deadline_seconds=cfg.get("active_deadline_seconds"),
            labels=self.labels,
            owner=self.owner,
            service=service["metadata"]["name"] if service else None,
        )
        return AppDryRunInfo(BatchJobRequest(resource, service), str)

    def _validate(self, app: AppDef, scheduler: str) -> None:
        pass  # app_to_job checks the one thing it needs

    def schedule(self, dryrun_info: AppDryRunInfo[BatchJobRequest]) -> str:
        from kubernetes.client.rest import ApiException

        cfg = dryrun_info._cfg or {}
        namespace = cfg.get("namespace") or "default"
        if dryrun_info.request.service is not None:
            self._ensure_service(namespace, dryrun_info.request.service)
        body = ks.sanitize_for_serialization(dryrun_info.request.resource)
        try:
            job = self._batch().create_namespaced_job(namespace=namespace, body=body)
        except ApiException as e:
            if e.status == 409:
                raise ValueError(
                    f"Job {namespace}/{body['metadata']['name']} already exists; "
                    "resubmit to get a new name"
                ) from e
            raise
        if self.watched is not None:  # read from memory at once (watched.py)
            self.watched.created(self._api_client().sanitize_for_serialization(job))
        return f"{namespace}:{job.metadata.name}"

    def _ensure_service(self, namespace: str, service: dict[str, Any]) -> None:
        """Creates the experiment's headless Service once per process (409: it exists, e.g.
        after a restart); before the Job, so its pods are named in DNS from their start."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        key = (namespace, service["metadata"]["name"])
        if key in self._services:
            return
        try:
            client.CoreV1Api(self._api_client()).create_namespaced_service(namespace, service)
        except ApiException as e:
            if e.status != 409:
                raise
        self._services.add(key)

    def _get(self, app_id: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        namespace, name = app_id.split(":")
        cached = cached_job(self.watched, namespace, name)
        if cached is not None:
            return cached
        try:
            job = self._batch().read_namespaced_job(name=name, namespace=namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return self._api_client().sanitize_for_serialization(job)

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        """None when the Job is gone; every phase and condition mapped by `job_state`; a
        pending Job's message says why it waits (waiting.job_reason)."""
        job = self._get(app_id)
        if job is None:
            return None
        state, message = job_state(job)
        if state is AppState.PENDING:  # say why, in the words of Kueue or the kubelet
            name = app_id.split(":")[1]
            selector = f"{JOB_NAME_LABEL}={name}"
            # only what Kueue or the kubelet says: "pod not ready" alone would be a reason
            # given for every pod that is about to run
            message = waiting.job_reason(self._api_client(), job, selector, self.watched)
        roles: list[RoleStatus] = []
        if state is AppState.FAILED and (job.get("spec") or {}).get("completionMode") == "Indexed":
            roles = self._replica_states(app_id)  # names the replica that failed
        return DescribeAppResponse(app_id=app_id, state=state, msg=message, roles_statuses=roles)

    def _replica_states(self, app_id: str) -> list[RoleStatus]:
        """Each replica's state from its pods (an Indexed Job's pod `k` is replica `k`); a
        replica with a failed pod is failed, whatever its other pods did."""
        from kubernetes import client

        namespace, name = app_id.split(":")
        pods = client.CoreV1Api(self._api_client()).list_namespaced_pod(
            namespace, label_selector=f"{JOB_NAME_LABEL}={name}"
        )
        states: dict[int, AppState] = {}
        for pod in pods.items:
            index = (pod.metadata.labels or {}).get(INDEX_LABEL, "")
            if not index.isdigit():
                continue
            state = POD_PHASES.get((pod.status and pod.status.phase) or "", AppState.UNKNOWN)
            if states.get(int(index)) is not AppState.FAILED:
                states[int(index)] = state
        role = RoleStatus("trainer", [])
        role.replicas = [
            ReplicaStatus(id=k, role="trainer", state=s, hostname="")
            for k, s in sorted(states.items())
        ]
        return [role] if role.replicas else []

    def _cancel_existing(self, app_id: str) -> None:
        """Deletes the Job and its pods; a Job already gone is not an error."""
        from kubernetes.client.rest import ApiException

        namespace, name = app_id.split(":")
        try:
            self._batch().delete_namespaced_job(
                name=name, namespace=namespace, propagation_policy="Background"
            )
        except ApiException as e:
            if e.status != 404:
                raise

    def list(self) -> list[ListAppResponse]:
        """The Jobs of the kube config's current namespace (what `torchx list` shows)."""
        from kubernetes import config

        try:
            namespace = config.list_kube_config_contexts()[1]["context"].get("namespace")
        except (config.ConfigException, KeyError, TypeError):
            namespace = None
        namespace = namespace or "default"
        jobs = self._batch().list_namespaced_job(namespace, timeout_seconds=30).items
        return [
            ListAppResponse(
                app_id=f"{namespace}:{job.metadata.name}",
                state=job_state(self._api_client().sanitize_for_serialization(job))[0],
            )
            for job in jobs
        ]

    def log_iter(
        self,
        app_id: str,
        role_name: str,
        k: int = 0,
        regex: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        should_tail: bool = False,
        streams: Stream | None = None,
    ) -> Iterable[str]:
        """The log of the Job's newest pod of replica `k` (COMBINED only, as the Kubernetes API
        gives it); a one-pod Job's pods carry no index and are replica 0."""
        from kubernetes import client

        if streams not in (None, Stream.COMBINED):
            raise ValueError(f"{NAME} only supports the COMBINED log stream")
        namespace, name = app_id.split(":")
        core = client.CoreV1Api(self._api_client())
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
        pods = [p for p in pods if (p.metadata.labels or {}).get(INDEX_LABEL, "0") == str(k)]
        if not pods:
            return iter(())
        pod = max(pods, key=lambda p: p.metadata.creation_timestamp or datetime.min)
        text = core.read_namespaced_pod_log(name=pod.metadata.name, namespace=namespace)
        lines = ks.split_lines(text)
        return ks.filter_regex(regex, lines) if regex else iter(lines)


def create_scheduler(session_name: str, client: Any = None, **kwargs: Any) -> BatchJobScheduler:
    """TorchX's scheduler factory (entry point `kubernetes_job`)."""
    return BatchJobScheduler(
        session_name, client=client, owner=kwargs.get("owner"), labels=kwargs.get("labels")
    )


__all__ = [
    "NAME",
    "QUEUE_LABEL",
    "BatchJobScheduler",
    "app_to_job",
    "create_scheduler",
    "job_state",
]
