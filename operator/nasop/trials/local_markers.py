"""Markers that a local trial leaves beside its logs (see `nasop.local.trialwrap`)."""

from __future__ import annotations

import json
import os
import signal
import sys

from nasop.local.trialwrap import write_marker

MARKER_DIR = ".nasop"


def marker_dir(log_dir: str) -> str:
    return os.path.join(log_dir, MARKER_DIR)


def wrap(argv: list[str], log_dir: str) -> list[str]:
    """The command line that runs `argv` under the marker-writing wrapper."""
    return [sys.executable, "-m", "nasop.local.trialwrap", marker_dir(log_dir), "--", *argv]


def exit_code(log_dir: str) -> int | None:
    try:
        with open(os.path.join(marker_dir(log_dir), "exit"), encoding="utf-8") as fh:
            return int(json.load(fh)["returncode"])
    except (OSError, ValueError, KeyError):
        return None


def _pids(log_dir: str) -> dict[str, int]:
    try:
        with open(os.path.join(marker_dir(log_dir), "pid"), encoding="utf-8") as fh:
            return {k: int(v) for k, v in json.load(fh).items()}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def is_running(log_dir: str) -> bool:
    """True when the wrapper of an orphaned trial is still alive."""
    pid = _pids(log_dir).get("wrapper")
    if not pid:
        return False
    return exit_code(log_dir) is None and _alive(pid)


def record_cancelled(log_dir: str) -> None:
    """A trial cancelled while its wrapper was still starting up leaves no markers at all;
    record the cancel, so that every local trial that ended has an exit code."""
    if exit_code(log_dir) is None and not _pids(log_dir):
        os.makedirs(marker_dir(log_dir), exist_ok=True)
        write_marker(os.path.join(marker_dir(log_dir), "exit"), {"returncode": -signal.SIGTERM})


def terminate(log_dir: str) -> None:
    """Stop an orphaned trial (its wrapper forwards the signal to the trainer)."""
    for key in ("wrapper", "child"):
        pid = _pids(log_dir).get(key)
        if pid and _alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


__all__ = ["exit_code", "is_running", "marker_dir", "record_cancelled", "terminate", "wrap"]
