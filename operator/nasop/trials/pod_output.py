"""Reading what a cluster trial reported: its pod's log and its termination message.

Identity comes from the platform, never from what the trial prints: the job is the one named by
the trial's app handle and owned (by uid) by this experiment; its pods are those whose controller
is that job (by uid). Each read asks the API server for the log since the last line seen
(`sinceTime`, with timestamps), at most `MAX_READ_BYTES`; lines are split with a length cap and
fed to the trial's collector, whose keys make the overlap of two reads harmless. The final
values come from the container's termination message once it has terminated.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from typing import Any

from nasop.results.collector import Collector, LineSplitter
from nasop.trials.output import add_termination, record_too_long

log = logging.getLogger(__name__)

MAX_READ_BYTES = 4 * 1024 * 1024  # per pod per tick (limitBytes)


def _parse_time(stamp: str) -> _dt.datetime | None:
    """An RFC 3339 timestamp of the kubelet's (nanoseconds cut to what Python holds)."""
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = _dt.datetime.fromisoformat(head).replace(tzinfo=_dt.timezone.utc)
        return when + _dt.timedelta(microseconds=int((frac + "000000")[:6]) if frac else 0)
    except ValueError:
        return None


def since_param(when: _dt.datetime) -> str:
    """`sinceTime` holds whole seconds: the read starts at the second of the last line seen."""
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodLogs:
    """The API calls a reader makes (one client; tests call the real server through it)."""

    def __init__(self, client: Any) -> None:
        from kubernetes import client as k8s

        self.client = client
        self.core = k8s.CoreV1Api(client)
        self.custom = k8s.CustomObjectsApi(client)

    def log(self, namespace: str, pod: str, container: str, since: str | None) -> bytes:
        """The pod's log with timestamps, from `since`, at most MAX_READ_BYTES."""
        query: list[tuple[str, Any]] = [
            ("container", container),
            ("timestamps", "true"),
            ("limitBytes", MAX_READ_BYTES),
        ]
        if since:
            query.append(("sinceTime", since))  # the Python client has no sinceTime argument
        response = self.client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            "GET",
            path_params={"namespace": namespace, "name": pod},
            query_params=query,
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        return bytes(response.data)


class PodOutput:
    """The output of one cluster trial or pack: its job's pods, read incrementally."""

    def __init__(
        self,
        logs: PodLogs,
        namespace: str,
        job_name: str,
        job: Callable[[], dict[str, Any] | None],
        pod_label: str,
        owner_uid: str | None,
        collector: Collector,
    ) -> None:
        self.logs = logs
        self.namespace = namespace
        self.job_name = job_name
        self._job = job
        self.pod_label = pod_label
        self.owner_uid = owner_uid
        self.collector = collector
        self.job_uid: str | None = None
        self.cursor: dict[str, _dt.datetime] = {}  # pod uid -> time of the last line read
        self.final_read: set[str] = set()

    def _resolve_job(self) -> str | None:
        """The uid of the trial's job, once it is known to be this experiment's."""
        if self.job_uid is None:
            job = self._job()
            if job is None:
                return None
            meta = job.get("metadata") or {}
            owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
            if self.owner_uid and self.owner_uid not in owners:
                self.collector.rejected["job not owned by this experiment"] += 1
                return None
            self.job_uid = meta.get("uid")
        return self.job_uid

    def read(self) -> Collector:
        job_uid = self._resolve_job()
        if job_uid is None:
            return self.collector
        pods = self.logs.core.list_namespaced_pod(
            self.namespace, label_selector=f"{self.pod_label}={self.job_name}"
        ).items
        for pod in pods:
            controller = [r for r in pod.metadata.owner_references or [] if r.controller]
            if not controller or controller[0].uid != job_uid:
                continue  # not a pod of the job this trial launched
            self._read_pod(pod)
        return self.collector

    def _read_pod(self, pod: Any) -> None:
        statuses = pod.status.container_statuses or []
        if not statuses or not pod.spec.containers:
            return
        container = pod.spec.containers[0].name
        status = next((s for s in statuses if s.name == container), None)
        if status is None or (status.state.running is None and status.state.terminated is None):
            return  # not started: no log yet
        uid = pod.metadata.uid
        self._read_log(pod.metadata.name, uid, container)
        terminated = status.state.terminated
        if terminated is not None and uid not in self.final_read:
            self.final_read.add(uid)
            if terminated.message:
                add_termination(self.collector, terminated.message)

    def _read_log(self, pod: str, uid: str, container: str) -> None:
        last = self.cursor.get(uid)
        try:
            data = self.logs.log(
                self.namespace, pod, container, since_param(last) if last else None
            )
        except Exception as e:  # a log the server cannot serve now is read at the next tick
            log.warning("log of pod %s/%s: %s", self.namespace, pod, e)
            return
        splitter = LineSplitter()
        newest = last
        for line in splitter.feed(data):  # a cut last line stays unread: the next read has it
            stamp, _, text = line.partition(" ")
            when = _parse_time(stamp)
            if when is None:
                continue
            self.collector.feed_line(text)
            newest = when if newest is None or when > newest else newest
        record_too_long(self.collector, splitter)
        if (
            len(data) >= MAX_READ_BYTES
            and last is not None
            and newest is not None
            and since_param(newest) == since_param(last)
        ):  # one second holds more than a read: skip past it, and say so
            newest = last + _dt.timedelta(seconds=1)
            self.collector.rejected["log lines skipped (over 4 MiB in one second)"] += 1
        if newest is not None:
            self.cursor[uid] = newest


__all__ = ["MAX_READ_BYTES", "PodLogs", "PodOutput", "since_param"]
