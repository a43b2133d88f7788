"""Running a pod's container as a local process the way a kubelet would, for the players.

The operator tests' players (tests/operator/volcano.py, kubelet.py) run trial containers as
local processes. What the operator reads of a container must behave as on a node: the log is a
list of lines, each stamped when it was written, served through ``pods/log`` with the kubelet's
``timestamps``, ``sinceTime`` and ``limitBytes``; the termination message is the file at the
container's termination path (here a temporary file named by ``NASOP_TERMINATION_LOG``), cut to
4096 bytes as the kubelet cuts it.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
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


def run_container(
    container: Mapping[str, Any],
    cancelled: threading.Event,
    timeout: float,
    log: PodLog | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Exited:
    """Runs ``command + args`` with the container's env; stdout and stderr go to ``log``."""
    log = log if log is not None else PodLog()
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    with tempfile.TemporaryDirectory() as tmp:
        termination = os.path.join(tmp, "termination-log")
        full_env = {
            **os.environ,
            **(env or {}),
            **{e["name"]: str(e.get("value", "")) for e in container.get("env") or []},
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
        message = ""
        if os.path.exists(termination):
            with open(termination, "rb") as fh:
                message = fh.read(MAX_TERMINATION_BYTES).decode("utf-8", "replace")
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Exited(code, message, killed, log)


__all__ = ["Exited", "PodLog", "run_container"]
