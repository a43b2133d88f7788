"""Running a pod's container as a local process the way a kubelet would, for the players.

The operator tests' players (tests/operator/volcano.py, kubelet.py) run trial containers as
local processes. What the operator reads of a container must behave as on a node: the log is a
list of lines, each stamped when it was written, served through ``pods/log`` with the kubelet's
``timestamps``, ``sinceTime`` and ``limitBytes``; the termination message is the file at the
container's termination path (here a temporary file named by ``NASOP_TERMINATION_LOG``), cut to
4096 bytes as the kubelet cuts it. A ConfigMap volume the container mounts is projected into a
temporary folder and refreshed while it runs (a kubelet refreshes it within its sync period);
an env value naming the mount path names that folder instead.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

MAX_TERMINATION_BYTES = 4096


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"  # RFC 3339 with nanoseconds


class PodLog:
    """A container's log as the kubelet keeps it: lines with the time each was written."""

    def __init__(self, text: str = "") -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self._lines: list[tuple[datetime.datetime, str]] = [
            (now, line) for line in text.splitlines(keepends=True)
        ]
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append((datetime.datetime.now(datetime.timezone.utc), line))

    def text(self) -> str:
        with self._lock:
            return "".join(line for _, line in self._lines)

    def stamped(self) -> list[tuple[datetime.datetime, str]]:
        """Each line with the time it was written (UTC), as ``kubectl logs --timestamps``."""
        with self._lock:
            return list(self._lines)

    def render(self, query: Mapping[str, str]) -> bytes:
        """The body of ``GET pods/{name}/log`` for this query, as the kubelet answers it."""
        since = query.get("sinceTime")
        start = (
            datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc
            )
            if since
            else None
        )
        stamps = query.get("timestamps", "").lower() in ("true", "1")
        with self._lock:
            lines = [(w, line) for w, line in self._lines if start is None or w >= start]
        body = "".join((f"{_stamp(w)} " if stamps else "") + line for w, line in lines).encode()
        limit = query.get("limitBytes")
        return body[: int(limit)] if limit else body


@dataclass
class Exited:
    """How a container ended: its exit code (128 + signal when killed) and termination message."""

    code: int
    message: str = ""
    killed: bool = False
    log: PodLog = field(default_factory=PodLog)


def _pump(stream: IO[str], log: PodLog) -> None:
    for line in iter(stream.readline, ""):
        log.append(line)


ConfigMapReader = Callable[[str], "Mapping[str, str] | None"]  # name -> data (None: absent)


class _ConfigMapVolumes:
    """The container's ConfigMap mounts, each a local folder the kubelet keeps in step."""

    def __init__(
        self,
        container: Mapping[str, Any],
        volumes: list[Mapping[str, Any]],
        read: ConfigMapReader | None,
        root: str,
        sync_seconds: float,
    ) -> None:
        by_name = {v["name"]: v["configMap"]["name"] for v in volumes if v.get("configMap")}
        self.folders: dict[str, tuple[str, str]] = {}  # mount path -> (folder, configmap)
        for m in container.get("volumeMounts") or []:
            if m["name"] in by_name and read is not None:
                folder = os.path.join(root, m["name"])
                os.makedirs(folder)
                self.folders[m["mountPath"]] = (folder, by_name[m["name"]])
        self.read, self.sync_seconds = read, sync_seconds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sync_forever, daemon=True)

    def env(self, value: str) -> str:
        folder = self.folders.get(value)
        return folder[0] if folder else value

    def start(self) -> None:
        self.sync()
        if self.folders:
            self.thread.start()

    def sync(self) -> None:
        for folder, name in self.folders.values():
            try:
                data = dict(self.read(name) or {}) if self.read else {}
            except Exception:  # the API server busy: keep what is there, as a kubelet does
                continue
            for key, value in data.items():
                tmp = os.path.join(folder, f".{key}.tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(value)
                os.replace(tmp, os.path.join(folder, key))
            for key in os.listdir(folder):
                if not key.startswith(".") and key not in data:  # a key removed from it
                    os.remove(os.path.join(folder, key))

    def _sync_forever(self) -> None:
        while not self.stop.wait(self.sync_seconds):
            try:
                self.sync()
            except FileNotFoundError:  # the container ended and its folder is gone meanwhile
                return

    def close(self) -> None:
        self.stop.set()


def run_container(
    container: Mapping[str, Any],
    cancelled: threading.Event,
    timeout: float,
    log: PodLog | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: list[Mapping[str, Any]] | None = None,
    configmaps: ConfigMapReader | None = None,
    sync_seconds: float = 0.5,
) -> Exited:
    """Runs ``command + args`` with the container's env; stdout and stderr go to ``log``.

    ``volumes`` (the pod's) and ``configmaps`` (reads a ConfigMap's data by name) project the
    container's ConfigMap mounts, refreshed every ``sync_seconds``.
    """
    log = log if log is not None else PodLog()
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    with tempfile.TemporaryDirectory() as tmp:
        termination = os.path.join(tmp, "termination-log")
        mounted = _ConfigMapVolumes(container, volumes or [], configmaps, tmp, sync_seconds)
        mounted.start()
        full_env = {
            **os.environ,
            **(env or {}),
            **{e["name"]: mounted.env(str(e.get("value", ""))) for e in container.get("env") or []},
            "NASOP_TERMINATION_LOG": termination,  # the kubelet's file at terminationMessagePath
        }
        with subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            reader = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
            reader.start()
            deadline = time.monotonic() + timeout
            killed = False
            while proc.poll() is None:
                if cancelled.is_set() or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    killed = True
                    break
                time.sleep(0.02)
            reader.join(timeout=10)
        mounted.close()
        message = ""
        if os.path.exists(termination):
            with open(termination, "rb") as fh:
                message = fh.read(MAX_TERMINATION_BYTES).decode("utf-8", "replace")
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Exited(code, message, killed, log)


__all__ = ["Exited", "PodLog", "run_container"]
