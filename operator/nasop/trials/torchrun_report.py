"""A distributed trial's failure reason, read through torchrun's own failure report.

A replica of a distributed trial is torchrun (trials/appdef.py). When a rank fails, torchrun
ends the pod's log with its traceback (`ChildFailedError`) and a report naming the first
failed rank and its exit code, so the log's last line is a row of `=`. The trial's reason is the
program's own last line before that report (torchrun's log lines skipped; with several ranks
in one pod their lines interleave, so it is the pod's last program line), with the rank and
exit code from the report; a replica that
was stopped because another failed ends with a signal instead, and no report. A pod log read
through TorchX has a timestamp before each line; it is dropped.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

CHILD_FAILED = "ChildFailedError"
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")  # a pod log's timestamps
_TORCH_LOG = re.compile(r"^[EWIDF]\d{4} \d\d:\d\d:\d\d")  # torchrun's own log lines
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_ROOT_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def log_lines(lines: Sequence[str]) -> list[str]:
    """The lines of a log as TorchX read them. Its kubernetes scheduler can hand back the whole
    log as one line, the ``repr`` of its bytes (``b'...\\n...'``: the kubernetes client's
    ``read_namespaced_pod_log`` turns an undecoded body into text with ``str()``): undone here."""
    if len(lines) == 1 and lines[0].startswith(("b'", 'b"')):
        try:
            raw = ast.literal_eval(lines[0].strip())
        except (ValueError, SyntaxError):
            return list(lines)
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace").splitlines()
    return list(lines)


def has_report(lines: Sequence[str]) -> bool:
    """True when torchrun reported a failed rank in this log (this replica's own failure)."""
    return any(CHILD_FAILED in line for line in lines)


def reason(lines: Sequence[str]) -> str:
    """The failing program's last line, with torchrun's rank and exit code when it reported;
    the plain last line otherwise."""
    lines = [_STAMP.sub("", ln.rstrip(), count=1) for ln in lines if ln.strip()]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return ""
    if not has_report(lines):
        return lines[-1]
    failed_at = max(i for i, line in enumerate(lines) if CHILD_FAILED in line)
    tracebacks = [
        i for i in range(failed_at) if lines[i].startswith("Traceback (most recent call last)")
    ]
    before = [
        ln for ln in (lines[: tracebacks[-1]] if tracebacks else []) if not _TORCH_LOG.match(ln)
    ]
    rank = exit_code = None
    root = next((i for i, line in enumerate(lines) if "Root Cause" in line), len(lines))
    for line in lines[root:]:
        rank = rank or (m.group(1) if (m := _ROOT_RANK.match(line)) else None)
        exit_code = exit_code or (m.group(1) if (m := _ROOT_EXIT.match(line)) else None)
    where = ", ".join(
        part
        for part in (f"rank {rank}" if rank else "", f"exit code {exit_code}" if exit_code else "")
        if part
    )
    text = before[-1] if before else "torchrun reported a failed rank"
    return f"{text} ({where})" if where else text


__all__ = ["has_report", "log_lines", "reason"]
