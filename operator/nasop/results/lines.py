"""One stdout line of a trial: nasop's own (``NASOP1`` + compact JSON) or Katib's ``name=value``.

Parsing is strict and never raises: a line is either a record or the reason it was refused
(a short phrase, counted by the collector and shown in an Event), so a hostile trial cannot crash
or confuse the reader, only be refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

PREFIX = "NASOP1 "
NASOP, KATIB = "nasop", "katib"  # the two line formats a manifest can choose
MAX_STEP = 1_000_000  # an epoch or progression beyond this is not a sane step
MAX_MEMBER = 1024  # the most members of a pack (spec.trial.pack.maxTrials)
MAX_SEQ = 10**12  # the largest sequence number (and count of lines) taken as sane

# Katib's StdOut collector: `name=value` pairs anywhere in a line (its default filter).
_KATIB_PAIR = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)")


@dataclass(frozen=True)
class Record:
    """What one line says: values at a step (``end`` for a pack member that finished)."""

    step: int | None
    values: dict[str, float] = field(default_factory=dict)
    seq: int | None = None
    member: int | None = None
    end: str | None = None
    reason: str = ""


def format_point(seq: int, step: int, values: dict[str, float], member: int | None = None) -> str:
    """The line a trial prints for one logged point (no newline)."""
    body: dict[str, object] = {"seq": seq, "step": step, "v": values}
    if member is not None:
        body["m"] = member
    return PREFIX + json.dumps(body, separators=(",", ":"), allow_nan=True)


def format_end(seq: int, member: int, state: str, reason: str = "") -> str:
    """The line a pack member prints when it ends (completed, failed or stopped)."""
    body = {"seq": seq, "m": member, "end": state, "reason": " ".join(reason.split())}
    return PREFIX + json.dumps(body, separators=(",", ":"))


def _int(value: object, lo: int, hi: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def _values(raw: object) -> dict[str, float] | str:
    if not isinstance(raw, dict) or not raw:
        return "no values"
    out: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} is not a number"
        out[str(name)] = float(value)  # NaN and inf are kept: the collector judges them
    return out


def parse_nasop(line: str) -> Record | str | None:
    """A record, the reason the line is refused, or None for a line that is not nasop's."""
    if not line.startswith(PREFIX):
        return None
    try:
        body = json.loads(line[len(PREFIX) :])
    except ValueError:
        return "not JSON after the prefix"
    if not isinstance(body, dict):
        return "not a JSON object after the prefix"
    member = body.get("m")
    if member is not None and _int(member, 0, MAX_MEMBER) is None:
        return "member index out of range"
    seq = body.get("seq")
    if seq is not None and _int(seq, 0, MAX_SEQ) is None:
        return "seq is not a non-negative integer"
    if "end" in body:
        if member is None or body["end"] not in ("completed", "failed", "stopped"):
            return "end without a member or with an unknown state"
        return Record(None, {}, seq, member, str(body["end"]), str(body.get("reason", ""))[:500])
    step = _int(body.get("step"), 0, MAX_STEP)
    if step is None:
        return f"step is not an integer in [0, {MAX_STEP}]"
    values = _values(body.get("v"))
    if isinstance(values, str):
        return values
    return Record(step, values, seq, member)


def parse_katib(line: str, declared: frozenset[str]) -> dict[str, float]:
    """Katib's StdOut convention: every ``name=value`` pair of a declared metric in the line.

    Katib has no step: the reader numbers each metric's values in order of appearance.
    """
    out: dict[str, float] = {}
    for name, text in _KATIB_PAIR.findall(line):
        if name not in declared or not text or text in "+-":
            continue
        try:
            value = float(text)
        except ValueError:
            continue
        if math.isfinite(value):
            out[name] = value
    return out


__all__ = [
    "KATIB",
    "MAX_SEQ",
    "MAX_STEP",
    "NASOP",
    "PREFIX",
    "Record",
    "format_end",
    "format_point",
    "parse_katib",
    "parse_nasop",
]
