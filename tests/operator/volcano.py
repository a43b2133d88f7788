"""A Volcano player for operator tests: moves ``batch.volcano.sh/v1alpha1`` jobs through their
phases.

The test control plane has Volcano's CRDs but no Volcano controller and no node (the next step),
so a submitted job would stay status-less forever. :class:`VolcanoPlayer` polls the API server's
jobs as the cluster admin (not through the fault proxy, so its traffic neither shows among the
operator's calls nor eats injected faults) and, per new job, in a worker thread:

1. writes ``status.state.phase: Pending`` (every task's pods ``Pending``);
2. creates one Pod per task replica, named as Volcano does (``<job>-<task>-<index>``) and owned by
   the job (so deleting the job deletes them), and writes ``Running``;
3. asks the ``outcome`` callback how the job ends (it may run the job's command for real);
4. optionally writes ``Completing``, then ``Completed`` or ``Failed`` (or what the callback says),
   with the pods' final phases and logs (readable through ``pods/log`` and TorchX ``log_iter``).

The status has the fields TorchX 0.7.0's ``KubernetesScheduler.describe()`` reads:
``status.state.phase`` (a key of its ``JOB_STATE``) and ``status.taskStatusCount``
(``{"<role>-<replica>": {"phase": {"<PodPhase>": n}}}``), plus Volcano's counters
(``pending``/``running``/``succeeded``/``failed``/...), ``minAvailable``, ``version`` and
``conditions``.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from container import PodLog, run_container
from controlplane import ApiError
from objects import Cluster

JOBS = "batch.volcano.sh/v1alpha1/jobs"
PODS = "v1/pods"
PODGROUPS = "scheduling.volcano.sh/v1beta1/podgroups"
TERMINAL = ("Completed", "Failed", "Aborted", "Terminated")


@dataclasses.dataclass
class JobOutcome:
    """How a job ends: its final Volcano phase, and per task its exit code, log and termination
    message."""

    phase: str = "Completed"
    exit_codes: dict[str, int] = dataclasses.field(default_factory=dict)
    logs: dict[str, str | PodLog] = dataclasses.field(default_factory=dict)
    message: str = ""
    messages: dict[str, str] = dataclasses.field(default_factory=dict)


#: The callback: ``outcome(job)`` or ``outcome(job, cancelled: threading.Event)``; it returns a
#: JobOutcome, a bool (success), an int (exit code), a phase name, or None (= Completed).
Outcome = Callable[..., Any]


def succeed(job: Mapping[str, Any]) -> JobOutcome:
    return JobOutcome("Completed")


def fail(job: Mapping[str, Any]) -> JobOutcome:
    return JobOutcome("Failed", message="failed by the test")


def closed_queue(job: Mapping[str, Any]) -> dict[str, Any]:
    """A PodGroup's status while its queue does not admit it, as Volcano's scheduler writes it."""
    queue = job["spec"].get("queue") or "default"
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "Unschedulable",
                "status": "True",
                "reason": "NotEnoughResources",
                "message": f"queue {queue} is closed: 1/1 tasks in gang unschedulable",
                "transitionID": "0",
                "lastTransitionTime": _now(),
            }
        ],
    }


def tasks_of(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("spec", {}).get("tasks") or [])


def _run_together(
    job: Mapping[str, Any],
    cancelled: threading.Event,
    logs: Mapping[str, PodLog],
    timeout: float,
    cwd: str | None,
    env: Mapping[str, str] | None,
) -> JobOutcome:
    tasks = tasks_of(job)
    exits: dict[str, Any] = {}
    policies = job["spec"].get("policies") or []
    terminate = {"event": "PodFailed", "action": "TerminateJob"} in policies
    stop = threading.Event()  # the job deleted, or (TerminateJob) a task failed
    first_failed: list[str] = []

    def run(task: dict[str, Any]) -> None:
        container = task["template"]["spec"]["containers"][0]
        exited = run_container(container, stop, timeout, logs.get(task["name"]), cwd=cwd, env=env)
        exits[task["name"]] = exited
        if exited.code != 0 and not exited.killed:
            first_failed.append(task["name"])
            if terminate:
                stop.set()

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in tasks]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if cancelled.is_set():
            stop.set()
        time.sleep(0.05)
    result = JobOutcome("Completed")
    for task in tasks:
        exited = exits[task["name"]]
        result.logs[task["name"]] = exited.log
        result.messages[task["name"]] = exited.message
        result.exit_codes[task["name"]] = exited.code
    if cancelled.is_set():
        result.phase = "Aborted"
    elif first_failed:  # Volcano's TerminateJob ends the job Terminated, the others killed
        result.phase = "Terminated" if terminate else "Failed"
        result.message = f"task {first_failed[0]} exited with {exits[first_failed[0]].code}"
    elif any(exits[t["name"]].killed for t in tasks):
        result.phase = "Failed"
    return result


def run_command(
    cwd: str | None = None,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    cluster: Any = None,
    together: bool = False,
) -> Outcome:
    """Build an outcome that runs each task's first container (command + args + env) locally.

    The task's pod spec is TorchX's: ``template.spec.containers[0]`` with ``command``, ``args`` and
    ``env: [{name, value}]``. Tasks run one after another; the job fails if any exits non-zero.
    With ``together`` they run at once, as Volcano starts a gang's pods (a data-parallel
    trial's replicas wait for each other at their rendezvous); the job fails if any exits
    non-zero, and the others run to their end, unless the job has Volcano's policy
    ``PodFailed -> TerminateJob``: then they are killed and the job ends ``Terminated``.
    The process is killed if the job is deleted meanwhile (then the phase is ``Aborted``). Its
    output goes to the pod's live log (``logs``, by task) as a kubelet keeps it. With ``cluster``,
    the ConfigMaps the pod mounts are read from the API server and kept in step as a kubelet does.
    """

    def outcome(
        job: Mapping[str, Any],
        cancelled: threading.Event,
        logs: Mapping[str, PodLog] | None = None,
    ) -> JobOutcome:
        if together:
            return _run_together(job, cancelled, logs or {}, timeout, cwd, env)
        result = JobOutcome("Completed")
        for task in tasks_of(job):
            pod_spec = task["template"]["spec"]
            container = pod_spec["containers"][0]
            log = (logs or {}).get(task["name"])
            namespace = job["metadata"]["namespace"]

            def configmap(name: str, namespace: str = namespace) -> Mapping[str, str] | None:
                found = cluster.get_object("v1/configmaps", namespace, name)
                return (found or {}).get("data") or ({} if found else None)

            exited = run_container(
                container,
                cancelled,
                timeout,
                log,
                cwd=cwd,
                env=env,
                volumes=pod_spec.get("volumes") or [],
                configmaps=configmap if cluster is not None else None,
            )
            result.logs[task["name"]] = exited.log
            result.messages[task["name"]] = exited.message
            result.exit_codes[task["name"]] = exited.code
            if exited.killed:
                result.phase = "Aborted" if cancelled.is_set() else "Failed"
                return result
            if exited.code != 0:
                result.phase = "Failed"
                result.message = f"task {task['name']} exited with {exited.code}"
                return result
        return result

    return outcome


class Gate:
    """An outcome that holds every job Running until :meth:`open` (or until it is cancelled),
    then ends it with ``then`` (default: run its command). Lets a test act while trials run."""

    def __init__(self, then: Outcome | None = None) -> None:
        self.then = then or run_command()
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def __call__(
        self,
        job: Mapping[str, Any],
        cancelled: threading.Event,
        logs: Mapping[str, PodLog] | None = None,
    ) -> Any:
        while not self.opened.wait(0.02):
            if cancelled.is_set():
                return JobOutcome("Aborted", message="cancelled while held")
        return _call(self.then, job, cancelled, logs)


def _call(
    outcome: Outcome,
    job: Mapping[str, Any],
    cancelled: threading.Event,
    logs: Mapping[str, PodLog] | None,
) -> Any:
    """Calls an outcome with what it takes: ``(job)``, ``(job, cancelled)``, or also ``logs``."""
    params = inspect.signature(outcome).parameters
    if "logs" in params:
        return outcome(job, cancelled, logs=logs)
    if len(params) >= 2:
        return outcome(job, cancelled)
    return outcome(job)


def _as_outcome(value: Any) -> JobOutcome:
    if isinstance(value, JobOutcome):
        return value
    if value is None or value is True or value == 0:
        return JobOutcome("Completed")
    if value is False or isinstance(value, int):
        return JobOutcome("Failed", message=f"exit code {int(value)}")
    if isinstance(value, str):
        return JobOutcome(value)
    raise TypeError(f"unsupported outcome: {value!r}")


def _task_phase(result: JobOutcome, task: str, default: str) -> str:
    """A task's pod phase: from its exit code when it ran, else the job's."""
    if task not in result.exit_codes or result.phase == "Aborted":
        return default
    return "Succeeded" if result.exit_codes[task] == 0 else "Failed"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class VolcanoPlayer:
    """Plays Volcano for the jobs on the test API server; start/stop or use as ``with``.

    Args:
        cluster: the server whose jobs to play.
        outcome: decides each job's end (see :data:`Outcome`); default: succeed at once.
        namespace: only jobs in this namespace (default: all).
        poll_interval: seconds between scans for new or deleted jobs.
        pending_seconds: how long a new job stays Pending before Running.
        completing: also pass through Volcano's ``Completing`` phase before ``Completed``.
        create_pods: create Pods for the tasks (owned by the job) and record their logs.
        admitted: if given, a new job stays Pending until this is set (its queue admits it).
        podgroup: if given, each job gets a PodGroup named as Volcano names it
            (``<job>-<job uid>``, owned by the job) whose status is ``podgroup(job)``, as
            Volcano's scheduler writes it while the job waits (e.g. :func:`closed_queue`).
    """

    def __init__(
        self,
        cluster: Cluster,
        outcome: Outcome = succeed,
        *,
        namespace: str | None = None,
        poll_interval: float = 0.1,
        pending_seconds: float = 0.0,
        completing: bool = False,
        create_pods: bool = True,
        admitted: threading.Event | None = None,
        podgroup: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.admitted = admitted
        self.podgroup = podgroup
        self.cluster = cluster
        self.outcome = outcome
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.pending_seconds = pending_seconds
        self.completing = completing
        self.create_pods = create_pods
        #: Final phases of the jobs played so far: ``{(namespace, name): phase}``.
        self.results: dict[tuple[str, str], str] = {}
        self.errors: list[BaseException] = []
        self._seen: dict[str, threading.Event] = {}  # uid -> "cancelled" flag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> VolcanoPlayer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> VolcanoPlayer:
        self._thread = threading.Thread(
            target=self._scan_forever, name="volcano-player", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for cancelled in self._seen.values():
            cancelled.set()
        for thread in [self._thread, *self._workers]:
            if thread is not None:
                thread.join(timeout=timeout)

    def wait_for(self, namespace: str, name: str, timeout: float = 10.0) -> str:
        """Wait until the job has reached a terminal phase; return that phase."""
        deadline = time.monotonic() + timeout
        while (namespace, name) not in self.results:
            if self.errors:
                raise self.errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {namespace}/{name} did not finish in {timeout}s")
            time.sleep(0.01)
        return self.results[(namespace, name)]

    # ------------------------------------------------------------------ internals

    def _scan_forever(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = self.cluster.list_objects(JOBS, self.namespace)
            except Exception as e:  # the server is gone: nothing more to play
                self.errors.append(e)
                return
            live = {job["metadata"]["uid"] for job in jobs}
            for uid, cancelled in self._seen.items():
                if uid not in live:
                    cancelled.set()
            for job in jobs:
                uid = job["metadata"]["uid"]
                if (
                    uid in self._seen
                    or job.get("status", {}).get("state", {}).get("phase") in TERMINAL
                ):
                    continue
                self._seen[uid] = threading.Event()
                worker = threading.Thread(
                    target=self._play,
                    args=(job, self._seen[uid]),
                    name=f"volcano-{job['metadata']['name']}",
                    daemon=True,
                )
                self._workers.append(worker)
                worker.start()
            self._stop.wait(self.poll_interval)

    def _play(self, job: dict[str, Any], cancelled: threading.Event) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        try:
            tasks = [(t["name"], int(t.get("replicas", 1))) for t in tasks_of(job)]
            self._set_status(job, "Pending", {t: {"Pending": n} for t, n in tasks})
            if self.podgroup is not None:
                self._create_podgroup(job)
            if self._stop.wait(self.pending_seconds) or cancelled.is_set():
                return
            while self.admitted is not None and not self.admitted.wait(0.05):
                if self._stop.is_set() or cancelled.is_set():
                    return
            logs = self._create_pods(job) if self.create_pods else {}
            self._set_status(job, "Running", {t: {"Running": n} for t, n in tasks})
            result = _as_outcome(_call(self.outcome, job, cancelled, logs))
            if cancelled.is_set() and self.cluster.get_object(JOBS, ns, name) is None:
                self.results[(ns, name)] = "Deleted"
                return
            pod_phase = "Succeeded" if result.phase == "Completed" else "Failed"
            if self.create_pods:
                self._finish_pods(job, result, pod_phase)
            if self.completing and result.phase == "Completed":
                self._set_status(job, "Completing", {t: {"Succeeded": n} for t, n in tasks})
            ends = {  # a task that exited 0 succeeded even when the job failed
                t: {_task_phase(result, t, pod_phase): n} for t, n in tasks
            }
            self._set_status(job, result.phase, ends, result.message)
            self.results[(ns, name)] = result.phase
        except ApiError as e:
            if (
                e.code != 404
            ):  # a job deleted mid-play is normal (TorchX cancel); anything else is not
                self.errors.append(e)
            self.results[(ns, name)] = "Deleted"
        except BaseException as e:  # surfaced by wait_for()
            self.errors.append(e)
            raise

    def _create_podgroup(self, job: Mapping[str, Any]) -> None:
        assert self.podgroup is not None
        meta = job["metadata"]
        name = f"{meta['name']}-{meta['uid']}"
        owner = {
            "apiVersion": "batch.volcano.sh/v1alpha1",
            "kind": "Job",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
        }
        body = {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "PodGroup",
            "metadata": {"name": name, "namespace": meta["namespace"], "ownerReferences": [owner]},
            "spec": {
                "minMember": int(job["spec"].get("minAvailable") or 1),
                "queue": job["spec"].get("queue") or "default",
            },
        }
        created = self.cluster.create_object(PODGROUPS, body)
        created["status"] = self.podgroup(job)
        try:
            self.cluster.replace_object(
                PODGROUPS, meta["namespace"], name, created, subresource="status"
            )
        except ApiError as e:  # a CRD without the status subresource keeps it in the object
            if e.code != 404:
                raise
            self.cluster.replace_object(PODGROUPS, meta["namespace"], name, created)

    def _set_status(
        self,
        job: Mapping[str, Any],
        phase: str,
        counts: dict[str, dict[str, int]],
        message: str = "",
    ) -> None:
        totals = {
            key: 0
            for key in ("pending", "running", "succeeded", "failed", "terminating", "unknown")
        }
        for phases in counts.values():
            for pod_phase, n in phases.items():
                key = {
                    "Pending": "pending",
                    "Running": "running",
                    "Succeeded": "succeeded",
                    "Failed": "failed",
                }.get(pod_phase, "unknown")
                totals[key] += n
        now = _now()
        status = {
            "state": {"phase": phase, "reason": "", "message": message, "lastTransitionTime": now},
            "minAvailable": int(
                job.get("spec", {}).get("minAvailable")
                or sum(sum(p.values()) for p in counts.values())
            ),
            "taskStatusCount": {task: {"phase": phases} for task, phases in counts.items()},
            "version": 1,
            "retryCount": 0,
            **totals,
        }
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        for _ in range(20):  # Volcano replaces the whole status (a merge would keep old phase keys)
            current = self.cluster.get_object(JOBS, ns, name)
            if current is None:
                raise ApiError(404, f"job {ns}/{name} is gone")
            conditions = list((current.get("status") or {}).get("conditions") or [])
            current["status"] = {
                **status,
                "conditions": [*conditions, {"status": phase, "lastTransitionTime": now}],
            }
            try:
                self.cluster.replace_object(JOBS, ns, name, current, subresource="status")
                return
            except ApiError as e:
                if e.code != 409:
                    raise
        raise RuntimeError(f"job {ns}/{name}: status conflicts did not stop")

    def _pod_names(self, job: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        name = job["metadata"]["name"]
        return [
            (task["name"], f"{name}-{task['name']}-{i}", task.get("template") or {})
            for task in tasks_of(job)
            for i in range(int(task.get("replicas", 1)))
        ]

    def _create_pods(self, job: Mapping[str, Any]) -> dict[str, PodLog]:
        """The job's pods, Running; returns each task's live log (of its first pod)."""
        meta = job["metadata"]
        logs: dict[str, PodLog] = {}
        owner = {
            "apiVersion": job["apiVersion"],
            "kind": job["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        for task, pod_name, template in self._pod_names(job):
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            labels.update({"volcano.sh/job-name": meta["name"], "volcano.sh/task-spec": task})
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": template.get("spec") or {},
                "metadata": {
                    "name": pod_name,
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                    "ownerReferences": [owner],
                },
            }
            self.cluster.create_object(PODS, pod)
            containers = (template.get("spec") or {}).get("containers") or [{}]
            running = {
                "name": containers[0].get("name", "main"),
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": _now()}},
            }
            self.cluster.patch_object(
                PODS,
                meta["namespace"],
                pod_name,
                {
                    "status": {
                        "phase": "Running",
                        "startTime": _now(),
                        "containerStatuses": [running],
                    }
                },
                subresource="status",
            )
            live = logs.setdefault(task, PodLog())
            self.cluster.set_pod_log(meta["namespace"], pod_name, live)
        return logs

    def _finish_pods(self, job: Mapping[str, Any], result: JobOutcome, pod_phase: str) -> None:
        ns = job["metadata"]["namespace"]
        for task, pod_name, template in self._pod_names(job):
            containers = (template.get("spec") or {}).get("containers") or [{}]
            code = result.exit_codes.get(task, 0 if pod_phase == "Succeeded" else 1)
            phase = _task_phase(result, task, pod_phase)
            self.cluster.set_pod_log(ns, pod_name, result.logs.get(task, ""))
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "finishedAt": _now(),
                **({"message": result.messages[task]} if result.messages.get(task) else {}),
            }
            status = {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": containers[0].get("name", "main"),
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
            if self.cluster.get_object(PODS, ns, pod_name) is not None:
                self.cluster.patch_object(
                    PODS, ns, pod_name, {"status": status}, subresource="status"
                )
