"""`nasop operator` processes forked from one that imported nasop once, for scenarios that kill
the operator many times.

A fresh interpreter spends ~10 s importing Ax before the operator's first tick; a fork of a
process that imported it already starts at once, so ten SIGKILLs cost seconds, not minutes.
Each child is a whole operator process (`nasop operator`: its own event loop, API connections,
liveness and metrics servers), killed with SIGKILL as a node kills a container: no handler, no
cleanup, no save.

Run as a script (the parent): imports, prints ``ready``, then for each ``fork LOGPATH`` line on
stdin forks one operator whose output goes to LOGPATH and prints its pid. Children are reaped
by the parent as they die.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _operator(log_path: str, namespace: str) -> None:
    """In the child: become `nasop operator --namespace NAMESPACE`, never return."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # TorchX/subprocess waits need their children
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from nasop.cli import main

    code = 1
    try:
        code = main(
            [
                "operator",
                "--namespace",
                namespace,
                f"--liveness-port={_free_port()}",
                f"--metrics-port={_free_port()}",
            ]
        )
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never the parent's atexit handlers or its stdin loop


def serve(namespace: str) -> None:
    for module in ("nasop.cli", "nasop.controller.main"):  # once here, inherited by every fork
        importlib.import_module(module)
    assert threading.active_count() == 1, threading.enumerate()  # fork only a one-thread process
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # dead children are reaped by the kernel
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command != "fork":
            continue
        pid = os.fork()
        if pid == 0:
            _operator(arg, namespace)
        print(pid, flush=True)


class Zygote:
    """The parent process, started from a test: ``fork(log)`` returns a new operator's pid."""

    def __init__(self, namespace: str = "default") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, namespace],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        self.stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        first = self.stdout.readline().strip()
        if first != "ready":
            self.close()
            raise RuntimeError(f"the operator zygote did not start: {first!r}")
        self.children: list[int] = []

    def fork(self, log_path: Path) -> int:
        self.stdin.write(f"fork {log_path}\n")
        self.stdin.flush()
        pid = int(self.stdout.readline())
        self.children.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.children:
            kill(pid)
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def kill(pid: int) -> None:
    """SIGKILL, then wait until the process is gone (reaped by the zygote)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while Path(f"/proc/{pid}").exists():
        threading.Event().wait(0.01)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "default")
