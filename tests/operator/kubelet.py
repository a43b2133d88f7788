"""A kubelet player for the Pods of ``batch/v1`` Jobs: runs each pod's container command locally.

The test control plane runs kube-controller-manager's own Job controller, so a Job the operator
creates gets real Pods (with the Job's labels, its job-tracking finalizer, owned by the Job); but
no node runs them. :class:`KubeletPlayer` polls the server's Job pods as the cluster admin and,
per new pod, in a worker thread, does what a kubelet would report:

1. ``status.phase: Running`` with ``Ready``/``ContainersReady`` conditions (the Job counts it
   ``ready``) and a running container status;
2. runs the container's ``command`` + ``args`` with its ``env`` as a local process (what
   ``outcome`` says, by default);
3. ``Succeeded`` or ``Failed`` with the container's exit code, and the output as the pod's log
   (served through the fault proxy's ``pods/log``); or, for an eviction, ``Failed`` with reason
   ``Evicted`` and the ``DisruptionTarget`` condition a kubelet adds when it evicts a pod.

A pod deleted meanwhile (its Job cancelled) has its process killed and, while a finalizer still
holds it, ends ``Failed`` with exit code 137, as a kubelet reports a container it killed. The Job
controller then judges the Job from these pod statuses, as on a real cluster.

``waiting(pod)`` may keep a pod from starting: while it returns a status (as a scheduler or
kubelet writes one for a pod that cannot start, e.g. :func:`unschedulable`, :func:`image_pull`),
the pod stays ``Pending`` with that status; once it returns None, the pod is played as above.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from container import PodLog, run_container
from controlplane import ApiError
from objects import Cluster

PODS = "v1/pods"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclasses.dataclass
class PodOutcome:
    """How a pod ends: exit code and log, or evicted (then the exit code is the kill's, 137)."""

    exit_code: int = 0
    log: str | PodLog = ""
    evicted: bool = False
    message: str = ""  # the container's termination message


#: ``outcome(pod, cancelled) -> PodOutcome``; the default runs the container command (it may
#: take ``log=``: the pod's live log, which ``pods/log`` serves while the process runs).
Outcome = Callable[..., PodOutcome]


def run_command(timeout: float = 120.0) -> Outcome:
    """Run the pod's first container (command + args, env) as a local process."""

    def outcome(
        pod: Mapping[str, Any], cancelled: threading.Event, log: PodLog | None = None
    ) -> PodOutcome:
        exited = run_container(pod["spec"]["containers"][0], cancelled, timeout, log)
        return PodOutcome(exited.code, exited.log, message=exited.message)

    return outcome


def gated(gate: threading.Event, then: Outcome | None = None) -> Outcome:
    """Each pod waits for `gate`, then runs as `then` says (its command by default); a pod
    deleted meanwhile ends with the kill's 137."""
    run = then or run_command()

    def outcome(
        pod: Mapping[str, Any], cancelled: threading.Event, log: PodLog | None = None
    ) -> PodOutcome:
        while not gate.wait(0.05):
            if cancelled.is_set():
                return PodOutcome(137, "")
        return run(pod, cancelled, log=log)

    return outcome


def evict(pod: Mapping[str, Any], cancelled: threading.Event) -> PodOutcome:
    return PodOutcome(137, "", evicted=True)


def hold(pod: Mapping[str, Any], cancelled: threading.Event) -> PodOutcome:
    """Run until the pod is deleted."""
    cancelled.wait()
    return PodOutcome(137, "")


#: ``waiting(pod) -> status | None``: why the pod cannot start yet (None: it can)
Waiting = Callable[[Mapping[str, Any]], dict[str, Any] | None]


def unschedulable(message: str) -> dict[str, Any]:
    """The status kube-scheduler writes on a pod it cannot place."""
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastTransitionTime": _now(),
            }
        ],
    }


def image_pull(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The status a kubelet writes on a pod whose image it cannot pull."""
    container = pod["spec"]["containers"][0]
    image = container.get("image", "")
    return {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "ready": False,
                "restartCount": 0,
                "image": image,
                "imageID": "",
                "started": False,
                "state": {
                    "waiting": {
                        "reason": "ErrImagePull",
                        "message": f'failed to pull and unpack image "{image}": not found',
                    }
                },
            }
        ],
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeletPlayer:
    """Plays the kubelet for Job pods on the test API server; use as ``with``.

    Args:
        cluster: the server whose pods to play.
        outcome: decides each pod's end (default: run its command).
        namespace: only pods in this namespace (default: all).
    """

    def __init__(
        self,
        cluster: Cluster,
        outcome: Outcome | None = None,
        *,
        namespace: str | None = None,
        poll_interval: float = 0.1,
        waiting: Waiting | None = None,
    ) -> None:
        self.cluster = cluster
        self.outcome = outcome or run_command()
        self.waiting = waiting
        self._held: dict[str, str] = {}  # pod uid -> the waiting reason written
        self.namespace = namespace
        self.poll_interval = poll_interval
        #: pods started so far, in order: (namespace, name, job name)
        self.started: list[tuple[str, str, str]] = []
        #: the labels of each pod started, by (namespace, name): which trial it ran
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        #: pods running now (started, not finished): for "never more than N at once" checks
        self.running: set[tuple[str, str]] = set()
        self.max_running = 0
        self.errors: list[BaseException] = []
        self._seen: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> KubeletPlayer:
        thread = threading.Thread(target=self._scan_forever, name="kubelet-player", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for cancelled in self._seen.values():
            cancelled.set()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def _scan_forever(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.cluster.list_objects(
                    PODS, self.namespace, label_selector=JOB_NAME_LABEL
                )
            except Exception as e:  # the server is gone
                self.errors.append(e)
                return
            live = {
                p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")
            }
            for uid, cancelled in self._seen.items():
                if uid not in live:
                    cancelled.set()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if (
                    uid in self._seen
                    or pod["metadata"].get("deletionTimestamp")
                    or (pod.get("status") or {}).get("phase") not in (None, "Pending")
                ):
                    continue
                if self._hold(pod):
                    continue
                self._seen[uid] = threading.Event()
                meta = pod["metadata"]
                self.labels[(meta["namespace"], meta["name"])] = dict(meta.get("labels") or {})
                worker = threading.Thread(
                    target=self._play,
                    args=(pod, self._seen[uid]),
                    name=f"kubelet-{pod['metadata']['name']}",
                    daemon=True,
                )
                self._threads.append(worker)
                worker.start()
            self._stop.wait(self.poll_interval)

    def _hold(self, pod: dict[str, Any]) -> bool:
        """Keep the pod Pending with the status `waiting` gives (written once per change)."""
        status = self.waiting(pod) if self.waiting else None
        if status is None:
            return False
        uid = pod["metadata"]["uid"]
        key = repr(status.get("conditions", [{}])[0].get("reason")) + repr(
            status.get("containerStatuses")
        )
        if self._held.get(uid) != key:
            try:
                self._status(pod, status)
            except ApiError as e:
                if e.code != 404:
                    self.errors.append(e)
                return True
            self._held[uid] = key
        return True

    def _play(self, pod: dict[str, Any], cancelled: threading.Event) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        container = pod["spec"]["containers"][0]["name"]
        try:
            now = _now()
            self._status(
                pod,
                {
                    "phase": "Running",
                    "startTime": now,
                    "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": now}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                    "containerStatuses": [
                        {
                            "name": container,
                            "ready": True,
                            "restartCount": 0,
                            "image": pod["spec"]["containers"][0].get("image", ""),
                            "imageID": "",
                            "started": True,
                            "state": {"running": {"startedAt": now}},
                        }
                    ],
                },
            )
            with self._lock:
                self.started.append((*key, meta["labels"].get(JOB_NAME_LABEL, "")))
                self.running.add(key)
                self.max_running = max(self.max_running, len(self.running))
            live = PodLog()
            self.cluster.set_pod_log(*key, live)
            try:
                if "log" in inspect.signature(self.outcome).parameters:
                    result = self.outcome(pod, cancelled, log=live)
                else:
                    result = self.outcome(pod, cancelled)
            finally:
                with self._lock:
                    self.running.discard(key)
            if cancelled.is_set():  # deleted: killed; a finalizer may still hold the pod
                result = PodOutcome(137, result.log)
                if self.cluster.get_object(PODS, *key) is None:
                    return
            self.cluster.set_pod_log(*key, result.log)
            now = _now()
            terminated = {
                "exitCode": result.exit_code,
                "finishedAt": now,
                "reason": "Completed" if result.exit_code == 0 else "Error",
                **({"message": result.message} if result.message else {}),
            }
            status: dict[str, Any] = {
                "phase": "Succeeded" if result.exit_code == 0 and not result.evicted else "Failed",
                "conditions": [
                    {"type": t, "status": "False", "lastTransitionTime": now}
                    for t in ("ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "restartCount": 0,
                        "image": pod["spec"]["containers"][0].get("image", ""),
                        "imageID": "",
                        "state": {"terminated": terminated},
                    }
                ],
            }
            if result.evicted:
                status["reason"] = "Evicted"
                status["message"] = "The node was low on resource: memory."
                status["conditions"].append(
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "message": "The node was low on resource: memory.",
                        "lastTransitionTime": now,
                    }
                )
            self._status(pod, status)
        except ApiError as e:
            if e.code != 404:
                self.errors.append(e)
        except BaseException as e:
            self.errors.append(e)
            raise

    def _status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        """Replace the pod's status (a kubelet owns it whole), retrying write conflicts."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for _ in range(20):
            current = self.cluster.get_object(PODS, ns, name)
            if current is None:
                raise ApiError(404, f"pod {ns}/{name} is gone")
            current["status"] = {**(current.get("status") or {}), **status}
            try:
                self.cluster.replace_object(PODS, ns, name, current, subresource="status")
                return
            except ApiError as e:
                if e.code != 409:
                    raise
        raise RuntimeError(f"pod {ns}/{name}: status conflicts did not stop")
