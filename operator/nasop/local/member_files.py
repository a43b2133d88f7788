"""How a pack member and the engine talk through the member's log directory (stdlib only).

A packed trial process (``NASOP_PACK``) trains several trials at once, so one exit code cannot say
how each of them ended. Each member therefore records its own end in ``<logDir>/.nasop/member``
(``{"state": "completed" | "failed" | "stopped", "reason": "..."}``), and the engine asks one
member to stop early by creating ``<logDir>/.nasop/stop``, which the packed trainer honours at
the next epoch boundary. A member with no end record when its process is gone was cut short by
the process (an infrastructure failure). The trainer and the engine both import this module, so
the file names live in one place.

In a cluster there is no shared folder: the operator writes a stop as the key ``stop-<index>``
of the experiment's stops ConfigMap, which the pack's pod mounts read-only at
``$NASOP_STOP_DIR`` (the kubelet refreshes it), and the member's end reaches the operator through
its log and termination message (the trial contract). :func:`stop_reason` reads both places.
"""

from __future__ import annotations

import json
import os

MARKER_DIR = ".nasop"  # the same folder a local lone trial's wrapper writes its markers into
END_FILE = "member"
STOP_FILE = "stop"
STOP_DIR_ENV = "NASOP_STOP_DIR"  # a read-only folder of `stop-<index>` files (a ConfigMap)
COMPLETED, FAILED, STOPPED = "completed", "failed", "stopped"
STATES = (COMPLETED, FAILED, STOPPED)


def _path(log_dir: str, name: str) -> str:
    return os.path.join(log_dir, MARKER_DIR, name)


def _write(path: str, payload: dict[str, str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)


def write_end(log_dir: str, state: str, reason: str = "") -> None:
    """Records how a member ended (atomic); ``reason`` is one line."""
    if state not in STATES:
        raise ValueError(f"member state must be one of {STATES}, not {state!r}")
    _write(_path(log_dir, END_FILE), {"state": state, "reason": " ".join(reason.split())})


def read_end(log_dir: str) -> dict[str, str] | None:
    """The member's end record, or None while it has none (running, or cut short)."""
    try:
        with open(_path(log_dir, END_FILE), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("state") not in STATES:
        return None
    return {"state": str(record["state"]), "reason": str(record.get("reason", ""))}


def request_stop(log_dir: str, reason: str = "") -> None:
    """Asks the packed trainer to stop this member at its next epoch boundary."""
    _write(_path(log_dir, STOP_FILE), {"reason": " ".join(reason.split())})


def stop_key(member: int) -> str:
    """The ConfigMap key (and file name under ``$NASOP_STOP_DIR``) of a member's stop request."""
    return f"stop-{int(member)}"


def stop_reason(log_dir: str, member: int | None = None) -> str | None:
    """The reason of a stop request, or None when none was made: the member's log dir first,
    then (for a member index) the mounted stops folder named by ``$NASOP_STOP_DIR``."""
    try:
        with open(_path(log_dir, STOP_FILE), encoding="utf-8") as fh:
            return str(json.load(fh).get("reason", ""))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        return ""
    folder = os.environ.get(STOP_DIR_ENV)
    if member is None or not folder:
        return None
    try:
        with open(os.path.join(folder, stop_key(member)), encoding="utf-8") as fh:
            return " ".join(fh.read(1000).split())
    except FileNotFoundError:
        return None
    except OSError:
        return ""


__all__ = [
    "COMPLETED",
    "FAILED",
    "STOPPED",
    "STOP_DIR_ENV",
    "read_end",
    "request_stop",
    "stop_key",
    "stop_reason",
    "write_end",
]
