"""What every experiment of one operator process shares: one API client, and one watch on the
trial jobs and one on the trial pods per watched namespace (or cluster-wide), which wake the
experiment whose job or pod ended.

Measured (bench/operator_scale.py, docs/benchmarks.md): with one client and a GET per trial per
tick each, the API server's load grew with experiments x running trials, and every experiment
loaded the kubeconfig and opened its own connections. Here an experiment's tick reads its
trials' jobs and pods from memory (trials/watched.py) and runs as soon as one of them ends
(a job finished or gone, a pod's container terminated), not only at its next tick: waking it
for every change (created, pending, running) made more ticks, each saving the state and
writing the status, and at 200 experiments the operator's CPU, not the API server, was the
limit. The watches start with the first experiment that launches that kind of job
(`spec.trial.scheduler`), so a cluster without Volcano is never asked for its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from torchx.specs import is_terminal

from nasop.trials import cluster, harvest
from nasop.trials.informer import Informer, Obj
from nasop.trials.watched import Watched, trim_job, trim_pod

log = logging.getLogger(__name__)

SELECTOR = "app.kubernetes.io/managed-by=nasop"  # on every trial job and pod (driver.open_search)
POD_LABELS = (cluster.VOLCANO.pod_label, cluster.BATCH.pod_label)  # a job's pods, by its name


def pod_ended(pod: Obj, deleted: bool) -> bool:
    """A trial pod whose output can now be read to its end (or never will be)."""
    status = pod.get("status") or {}
    if deleted or status.get("phase") in ("Succeeded", "Failed"):
        return True
    states = [s.get("state") or {} for s in status.get("containerStatuses") or []]
    return any(s.get("terminated") is not None for s in states)


def collection(group: str, version: str, plural: str, namespace: str) -> str:
    """The API path of a collection, in a namespace or ("") in all of them."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


class Watches:
    """The shared client and watches of one operator; `close()` stops the watches."""

    def __init__(self, api: Any, namespaces: list[str], loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.namespaces = list(namespaces)
        self.loop = loop
        self._informers: dict[str, Informer] = {}  # collection path -> its informer
        self._wakers: dict[str, asyncio.Event] = {}  # experiment uid -> its wake-up
        self._lock = threading.Lock()
        self.closed = asyncio.Event()  # set by close(), in the loop's thread

    def scope(self, namespace: str) -> str:
        """The namespace a watch covers: the experiment's, or all ("") when all are watched."""
        return namespace if self.namespaces else ""

    def watched(self, kind: cluster.JobKind, namespace: str) -> Watched:
        """The watched jobs of this kind and the trial pods for an experiment in `namespace`;
        starts the watches the first time (thread-safe: searches open in threads)."""
        scope = self.scope(namespace)

        def job_ended(job: Obj, deleted: bool) -> bool:
            return deleted or is_terminal(kind.state(job))

        jobs_path = collection(kind.group, kind.version, kind.plural, scope)
        jobs = self._informer(jobs_path, (), trim_job, job_ended)
        pods_path = collection("", "v1", "pods", scope)
        pods = self._informer(pods_path, POD_LABELS, trim_pod, pod_ended)
        return Watched(jobs, pods)

    def _informer(
        self,
        path: str,
        index: tuple[str, ...],
        trim: Callable[[Obj], Obj],
        ended: Callable[[Obj, bool], bool],
    ) -> Informer:
        def changed(obj: Obj, deleted: bool) -> None:
            if ended(obj, deleted):
                self._wake(obj)

        with self._lock:
            found = self._informers.get(path)
            if found is None:
                found = Informer(
                    self.api, path, SELECTOR, index=index, trim=trim, on_change=changed
                ).start()
                self._informers[path] = found
                log.info("watching %s (%s)", path, SELECTOR)
            return found

    def waker(self, uid: str) -> asyncio.Event:
        """Set whenever a job or pod of the experiment with this uid ends."""
        return self._wakers.setdefault(uid, asyncio.Event())

    def forget(self, uid: str) -> None:
        self._wakers.pop(uid, None)

    def _wake(self, obj: Obj) -> None:
        """From an informer's thread: wake the experiment the object belongs to."""
        uid = ((obj.get("metadata") or {}).get("labels") or {}).get(harvest.UID_LABEL)
        event = self._wakers.get(uid) if uid else None
        if event is not None:
            try:
                self.loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: the operator has stopped
                pass

    def close(self) -> None:
        """Stop the watches (not waiting for their threads: a watch read that does not notice
        its closed connection ends with the watch, at most WATCH_SECONDS later); idempotent.
        Call it in the loop's thread."""
        self.closed.set()
        with self._lock:
            informers, self._informers = list(self._informers.values()), {}
        for informer in informers:
            informer.stop(timeout=0.0)
        try:
            self.api.close()
        except Exception as e:  # closing connections of a client that is going anyway
            log.debug("closing the shared API client: %s", e)


async def close_on_exit(shared: Watches) -> None:
    """A task that closes `shared` when the operator stops: kopf cancels every task started
    after its startup when it is cancelled, and runs no cleanup handler then."""
    try:
        await shared.closed.wait()
    finally:
        shared.close()


__all__ = ["SELECTOR", "Watches", "close_on_exit", "collection"]
