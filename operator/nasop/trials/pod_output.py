"""Reading what a cluster trial reported: its pod's log and its termination message.

Identity comes from the platform, never from what the trial prints: the job is the one named by
the trial's app handle and owned (by uid) by this experiment; its pods are those whose controller
is that job (by uid). Each read asks the API server for the log since the last line seen
(`sinceTime`, with timestamps), at most `MAX_READ_BYTES`; lines are split with a length cap and
fed to the trial's collector, whose keys make the overlap of two reads harmless. The final
values come from the container's termination message once it has terminated.

A trial is *harvested* once each of its pods has terminated, its termination message has been
read and its log has been read to the end after that (`PodOutput.harvest`). Only then does the
runner record how the trial ended and, once that is saved, let go of the pods (harvest.py removes
their `nasop.dev/harvest` finalizer). A pod gone before that (deleted, its job deleted, garbage
collected) is named in the harvest's `lost` reason; its final values count if its termination
message was read before it went.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nasop.results.collector import Collector, LineSplitter
from nasop.trials.output import add_termination, record_too_long

log = logging.getLogger(__name__)

MAX_READ_BYTES = 4 * 1024 * 1024  # per pod per read (limitBytes)
HARVEST_READS = 8  # reads per harvest call: a 32 MiB remainder is read in one tick
HARVEST_SECONDS = 120.0  # a pod whose output cannot be read to its end by then is given up
NOT_OURS = "job not owned by this experiment"


@dataclass
class PodSeen:
    """What a reader knows of one pod of its job."""

    name: str
    exit_code: int | None = None  # once its container has terminated
    final: bool = False  # its termination state (and message, if any) was read
    done: bool = False  # terminated, and its log read to the end after that
    error: str = ""  # why its last log read failed


@dataclass(frozen=True)
class Harvest:
    """How far a trial's output has been read once its job ended."""

    done: bool  # nothing more will be read: the output is whole, or what is left is lost
    lost: str = ""  # why part of it can never be read ("pod X was deleted before ...")
    final: bool = False  # the final values (termination messages) of every pod were read
    exit_codes: dict[str, int] = field(default_factory=dict)  # pod name -> exit code


def _parse_time(stamp: str) -> _dt.datetime | None:
    """An RFC 3339 timestamp of the kubelet's (nanoseconds cut to what Python holds)."""
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = _dt.datetime.fromisoformat(head).replace(tzinfo=_dt.timezone.utc)
        return when + _dt.timedelta(microseconds=int((frac + "000000")[:6]) if frac else 0)
    except ValueError:
        return None


def _uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


def since_param(when: _dt.datetime) -> str:
    """`sinceTime` holds whole seconds: the read starts at the second of the last line seen."""
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodLogs:
    """The API calls a reader makes (one client; tests call the real server through it), and
    the operator's watch of the trial pods when it has one (`watched`, trials/watched.py)."""

    def __init__(self, client: Any, watched: Any = None) -> None:
        from kubernetes import client as k8s

        self.client = client
        self.watched = watched
        self.core = k8s.CoreV1Api(client)
        self.custom = k8s.CustomObjectsApi(client)

    def list_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        """The pods with ``label=value``, from the API server (as plain dicts)."""
        response = self.core.list_namespaced_pod(
            namespace, label_selector=f"{label}={value}", _preload_content=False
        )
        return list(json.loads(response.data).get("items") or [])

    def cached_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]] | None:
        """The same pods as the operator's watch has them; None when it cannot tell."""
        if self.watched is None:
            return None
        pods: list[dict[str, Any]] | None = self.watched.pods(namespace, label, value)
        return pods

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
        job_uid: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logs = logs
        self.namespace = namespace
        self.job_name = job_name
        self._job = job
        self.pod_label = pod_label
        self.owner_uid = owner_uid
        self.collector = collector
        #: the uid of the trial's job: recorded at launch (run metadata), else read from the job
        self.job_uid = job_uid
        self._verified = False  # the job was seen owned by this experiment (or is gone)
        self.clock = clock
        self.cursor: dict[str, _dt.datetime] = {}  # pod uid -> time of the last line read
        self.pods: dict[str, PodSeen] = {}  # pod uid -> what is known of it
        self.present: set[str] = set()  # pod uids found by the last list
        self.listed = False  # the job's pods were listed at least once
        self._harvest_since: float | None = None

    def _resolve_job(self) -> str | None:
        """The uid of the trial's job, once it is known to be this experiment's. A job gone
        since launch keeps the uid recorded then: its pods may still be there to read."""
        if self._verified:
            return self.job_uid
        job = self._job()
        if job is None:
            self._verified = self.job_uid is not None
            return self.job_uid
        meta = job.get("metadata") or {}
        owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if self.owner_uid and self.owner_uid not in owners:
            self.collector.rejected[NOT_OURS] += 1
            return None
        if self.job_uid is not None and meta.get("uid") != self.job_uid:
            # the job of that name was deleted and another created: not this trial's
            self._verified = True
            return self.job_uid
        self.job_uid, self._verified = meta.get("uid"), True
        return self.job_uid

    def read(self, fresh: bool = False) -> Collector:
        """Read what is new in the output of the job's pods. The pods come from the operator's
        watch unless ``fresh`` or the watch cannot show every pod seen so far (then from the
        API server: a pod is counted gone only when the server says so)."""
        job_uid = self._resolve_job()
        if job_uid is None:
            return self.collector
        pods = (
            None if fresh else self.logs.cached_pods(self.namespace, self.pod_label, self.job_name)
        )
        if pods is not None and not self.present <= {_uid(p) for p in pods}:
            pods = None  # the watch lost sight of a pod: is it gone? (none seen yet: no output)
        if pods is None:
            pods = self.logs.list_pods(self.namespace, self.pod_label, self.job_name)
        present = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            controller = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
            if not controller or controller[0].get("uid") != job_uid:
                continue  # not a pod of the job this trial launched
            present.add(meta.get("uid", ""))
            self._read_pod(pod)
        self.present, self.listed = present, True
        return self.collector

    def _read_pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        seen = self.pods.setdefault(uid, PodSeen(meta.get("name", "")))
        if seen.done:
            return  # read to its end already
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        containers = (pod.get("spec") or {}).get("containers") or []
        if not statuses or not containers:
            return
        container = containers[0].get("name", "")
        status = next((s for s in statuses if s.get("name") == container), None)
        state = (status or {}).get("state") or {}
        terminated = state.get("terminated")
        if state.get("running") is None and terminated is None and seen.exit_code is None:
            return  # not started: no log yet
        # the state was listed before this read: once terminated, the read sees the whole log
        # (a watch that lags behind an earlier list does not make it run again)
        whole = self._read_log(seen.name, uid, container, seen)
        if terminated is not None:
            seen.exit_code = terminated.get("exitCode")
            if not seen.final:
                seen.final = True
                if terminated.get("message"):
                    add_termination(self.collector, terminated["message"])
        if seen.exit_code is not None:
            seen.done = whole

    def harvest(self, reads: int = HARVEST_READS) -> Harvest:
        """Read the output of the ended job to its end (a few reads per call); say how far
        that got. Called once the job has ended (or vanished): not done means "call again"."""
        fresh = self._harvest_since is None  # the job ended: its pods as the server has them
        if fresh:
            self._harvest_since = self.clock()
        for _ in range(reads):
            try:
                self.read(fresh=fresh)
                fresh = False
            except Exception as e:  # the pods cannot be listed now: next tick
                log.warning("pods of job %s/%s: %s", self.namespace, self.job_name, e)
                return self._give_up_or_wait(f"its pods could not be listed: {e}")
            waiting = [p for u, p in self.pods.items() if u in self.present and not p.done]
            if not waiting or any(p.error or p.exit_code is None for p in waiting):
                break  # read to the end, or more reads now would not help
        codes = {p.name: p.exit_code for p in self.pods.values() if p.exit_code is not None}
        if self.job_uid is None and self.collector.rejected[NOT_OURS]:
            return Harvest(True, f"job {self.job_name} is not owned by this experiment")
        if self.job_uid is None:
            return Harvest(True, f"job {self.job_name} was deleted before its output was read")
        gone = [p for u, p in self.pods.items() if u not in self.present and not p.done]
        waiting = [p for u, p in self.pods.items() if u in self.present and not p.done]
        final = bool(self.pods) and all(p.final for p in self.pods.values())
        if gone:
            names = ", ".join(p.name for p in gone)
            return Harvest(
                True, f"pod {names} was deleted before its output was read", final, codes
            )
        if self.listed and not self.pods:
            return Harvest(
                True, f"the pods of job {self.job_name} were deleted before their output was read"
            )
        if waiting:
            names = ", ".join(p.name for p in waiting)
            why = "; ".join(sorted({p.error for p in waiting if p.error}))
            return self._give_up_or_wait(
                f"pod {names} could not be read to its end" + (f": {why}" if why else ""),
                final,
                codes,
            )
        return Harvest(True, "", final, codes)

    def _give_up_or_wait(
        self, why: str, final: bool = False, codes: dict[str, int] | None = None
    ) -> Harvest:
        assert self._harvest_since is not None
        if self.clock() - self._harvest_since < HARVEST_SECONDS:
            return Harvest(False)
        return Harvest(True, f"{why} within {HARVEST_SECONDS:.0f} s", final, codes or {})

    def _read_log(self, pod: str, uid: str, container: str, seen: PodSeen) -> bool:
        """Read what is new in the pod's log; True when that reached the end of the log."""
        last = self.cursor.get(uid)
        try:
            data = self.logs.log(
                self.namespace, pod, container, since_param(last) if last else None
            )
        except Exception as e:  # a log the server cannot serve now is read at the next tick
            log.warning("log of pod %s/%s: %s", self.namespace, pod, e)
            seen.error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            return False
        seen.error = ""
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
        return len(data) < MAX_READ_BYTES


__all__ = ["MAX_READ_BYTES", "Harvest", "PodLogs", "PodOutput", "PodSeen", "since_param"]
