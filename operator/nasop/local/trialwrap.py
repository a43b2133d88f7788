"""Run one local trial and leave its pid and exit code beside its logs.

TorchX's local scheduler keeps its apps in memory, so after `nasop run` is killed a new run cannot
ask it about trials that are still running (orphaned) or that finished meanwhile. This wrapper
(stdlib only, so it starts fast) writes `<dir>/pid` at start and `<dir>/exit` at the end; the local
runner reads them to re-attach instead of losing or repeating the trial.

The trainer's stdout goes to `<dir>/stdout` (appended, so a re-attached reader finds every line):
the trial contract's `NASOP1` lines are read from there, as a pod's log is read in a cluster.

With `NASOP_FORKSERVER` set (`nasop run --preload`), a Python trial is forked by that server
(`nasop.local.forkserver`) instead of started fresh; the markers are the same, `child` is its pid.

Usage: python -m nasop.local.trialwrap MARKER_DIR -- COMMAND [ARGS...]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from nasop.local import forkserver

STDOUT = "stdout"  # the trainer's stdout, beside the markers


def write_marker(path: str, payload: dict) -> None:
    """Atomic, and safe when the wrapper and the runner both record the same cancel."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(
            "usage: python -m nasop.local.trialwrap MARKER_DIR -- COMMAND [ARGS...]",
            file=sys.stderr,
        )
        return 2
    marker_dir, command = argv[0], argv[2:]
    received: list[int] = []
    proc: subprocess.Popen[bytes] | forkserver.Launched | None = None

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if proc is not None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

    # Handlers first: a cancel that arrives before the trainer starts is still recorded.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    os.makedirs(marker_dir, exist_ok=True)
    out = os.open(os.path.join(marker_dir, STDOUT), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)  # the trainer (spawned or forked) inherits it as its stdout
    os.close(out)
    if received:
        write_marker(os.path.join(marker_dir, "exit"), {"returncode": -received[0]})
        return 128 + received[0]
    server = os.environ.pop(forkserver.ENV_VAR, "")
    forked = server and forkserver.launch(server, command, dict(os.environ), os.getcwd())
    proc = forked or subprocess.Popen(command)
    if received:
        proc.send_signal(received[0])
    write_marker(os.path.join(marker_dir, "pid"), {"wrapper": os.getpid(), "child": proc.pid})
    rc = proc.wait()
    if rc is None:  # a forked trial that died without reporting: killed
        rc = -(received[0] if received else signal.SIGKILL)
    write_marker(os.path.join(marker_dir, "exit"), {"returncode": rc})
    return 0 if rc == 0 else (rc if rc > 0 else 128 - rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
