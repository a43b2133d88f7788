"""The local runner's side of `nasop.local.forkserver`: start it, hand its socket to trials,
stop it.

The server outlives nothing: it exits when `nasop run` closes the runner or dies. Trials it
forked are independent processes, so stopping the server leaves running trials running (an
interrupted `nasop run` re-attaches to them, as to any local trial).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from nasop.local import forkserver

START_TIMEOUT_S = 30.0  # Python start-up to a listening socket, with room for a loaded machine


class ForkServer:
    """One server process per local runner, started on the first trial."""

    def __init__(self, preload: Sequence[str], log_path: str) -> None:
        self.preload = list(preload)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def socket_path(self) -> str | None:
        return os.path.join(self._dir, "fork.sock") if self._dir else None

    def env(self) -> dict[str, str]:
        """What a trial wrapper needs to use the server (started on first use); nothing once
        the server has exited (a failed import: trials start fresh, forkserver.log says why)."""
        if self._proc is None:
            self._start()
        if self._proc is None or self._proc.poll() is not None:
            return {}
        return {forkserver.ENV_VAR: self.socket_path or ""}

    def _start(self) -> None:
        # a short private path: Unix socket paths are limited to 108 bytes
        self._dir = tempfile.mkdtemp(prefix="nasop-fork-")
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nasop.local.forkserver",
                    self.socket_path or "",
                    *self.preload,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, forkserver.PARENT_ENV_VAR: str(os.getpid())},
            )
        # it listens before importing: wait for the socket, so the first trial can connect
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self.socket_path or "") and time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break  # failed to start: trials start fresh, forkserver.log says why
            time.sleep(0.01)

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


__all__ = ["ForkServer"]
