"""The trial jobs and pods as the operator's watches see them (informer.py), for the schedulers
and the pod readers of every experiment in one process.

A lookup answers from memory while its informer is synced; it answers None ("ask the API
server") when the informer is not synced, or when a job is not there: a job created a moment
ago may not have come through the watch yet, so absence is confirmed by a GET (one for a job
that is gone, once). A label index finds a job's pods by its job-name label.

A lookup made while the informer is listing (the first list, which starts with the first
launch, or a list after a failure) waits up to `SYNC_WAIT` seconds for it instead of asking at
once: a list answers in milliseconds, and asking meanwhile made every tick of every experiment
that just started its first trial a GET, a race that decided whether a run made any GET at all
(tests/packaging/test_rbac.py compares the calls of runs). A list slower than that (an API
server in trouble) is bypassed: the tick asks for what it needs, and no lookup waits again
for `BYPASS_SECONDS` (a tick that reads ten jobs waits once, not ten times).
"""

from __future__ import annotations

import time
from typing import Any

from nasop.trials.informer import Informer, Obj, trim

#: what a reader of a job never looks at: its pod templates (the bulk of a Volcano job)
JOB_DROP = ("spec.tasks", "spec.template")
#: seconds a lookup waits for an informer that is listing before it asks the API server
SYNC_WAIT = 1.0
#: after a wait that timed out, lookups ask the API server at once for this long
BYPASS_SECONDS = 10.0


def trim_job(obj: Obj) -> Obj:
    """A job without its pod templates; a Volcano job keeps its tasks' names (a terminated
    gang's replicas are named from them: volcano.gang_replica_states)."""
    out = trim(obj, JOB_DROP)
    tasks = (obj.get("spec") or {}).get("tasks")
    if tasks:
        out.setdefault("spec", {})["tasks"] = [{"name": t.get("name", "")} for t in tasks]
    return out


def trim_pod(obj: Obj) -> Obj:
    """A pod as the readers use it: metadata, status and its containers' names."""
    out = trim(obj, ("spec",))
    containers = ((obj.get("spec") or {}).get("containers")) or []
    out["spec"] = {"containers": [{"name": c.get("name", "")} for c in containers]}
    return out


class Watched:
    """The informers of one kind of trial job and of the trial pods, for one namespace (or all:
    the namespace is then part of each lookup anyway)."""

    def __init__(self, jobs: Informer | None, pods: Informer | None) -> None:
        self.jobs = jobs
        self.pods_informer = pods
        self._bypass_until = 0.0  # monotonic time until which lookups do not wait

    def _ready(self, informer: Informer) -> bool:
        """Synced, or synced within `SYNC_WAIT` (unless a recent wait timed out)."""
        if informer.synced.is_set():
            return True
        if time.monotonic() < self._bypass_until:
            return False
        if informer.synced.wait(SYNC_WAIT):
            return True
        self._bypass_until = time.monotonic() + BYPASS_SECONDS
        return False

    def job(self, namespace: str, name: str) -> Obj | None:
        """The job as watched, or None: ask the API server (not synced, or not seen yet)."""
        if self.jobs is None or not self._ready(self.jobs):
            return None
        return self.jobs.get(namespace, name)

    def created(self, job: Obj) -> None:
        """A job this operator has just created (the API server's answer): read from memory
        at once, not asked for again until the watch brings it."""
        if self.jobs is not None and self.jobs.synced.is_set():
            self.jobs.add(job)

    def pods(self, namespace: str, label: str, value: str) -> list[Obj] | None:
        """The pods with ``label=value`` as watched; None when the watch is not synced."""
        informer = self.pods_informer
        if informer is None or label not in informer.index_labels:
            return None
        if not self._ready(informer):
            return None
        return informer.select(namespace, label, value)


def cached_job(watched: Any, namespace: str, name: str) -> Obj | None:
    """``watched.job(...)`` when there is a watch, else None."""
    return watched.job(namespace, name) if watched is not None else None


__all__ = [
    "BYPASS_SECONDS",
    "JOB_DROP",
    "SYNC_WAIT",
    "Watched",
    "cached_job",
    "trim_job",
    "trim_pod",
]
