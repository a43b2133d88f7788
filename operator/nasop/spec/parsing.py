"""The small text languages inside a spec: outcome constraints, linear parameter constraints,
durations. Each parser raises ValueError saying which syntax it expected."""

from __future__ import annotations

import re
from typing import Literal

from nasop.spec.base import WireModel

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONSTRAINT_RE = re.compile(r"^\s*(?P<lhs>.+?)\s*(?P<op><=|>=)\s*(?P<rhs>.+?)\s*$")
_OUTCOME_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=)\s*(?P<bound>[-+0-9.eE]+)\s*$"
)
_DURATION_RE = re.compile(r"^\s*(?P<n>\d+(\.\d+)?)\s*(?P<unit>s|m|h|d)?\s*$")


class OutcomeConstraint(WireModel):
    """A parsed `metric <= bound` / `metric >= bound` constraint."""

    metric: str
    op: Literal["<=", ">="]
    bound: float


def parse_outcome_constraint(text: str) -> OutcomeConstraint:
    """Parse `latency_ms <= 5`; raises ValueError naming the expected syntax."""
    m = _OUTCOME_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not of the form '<metric> <= <number>' or '>='")
    try:
        bound = float(m["bound"])
    except ValueError as e:
        raise ValueError(f"{text!r}: bound {m['bound']!r} is not a number") from e
    # the pattern admits only the Literal's operators
    return OutcomeConstraint(metric=m["metric"], op=m["op"], bound=bound)  # type: ignore[arg-type]


def parameter_constraint_names(text: str) -> list[str]:
    """Names used by a linear parameter constraint such as `x1 + 2*x2 <= 10`."""
    m = _CONSTRAINT_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a linear inequality using <= or >=")
    allowed = re.compile(r"^[\sA-Za-z0-9_+\-*.eE]+$")
    for side in (m["lhs"], m["rhs"]):
        if not allowed.match(side):
            raise ValueError(f"{text!r}: only +, -, * and numbers may combine parameters")
    names = [n for n in _IDENT_RE.findall(m["lhs"] + " " + m["rhs"]) if not _is_exponent(n)]
    if not names:
        raise ValueError(f"{text!r} names no parameter")
    return names


def _is_exponent(token: str) -> bool:
    return bool(re.fullmatch(r"[eE]\d*", token))


def parse_duration(text: str) -> float:
    """`90m` -> 5400.0; a bare number is seconds."""
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 90m, 2h, 3600s")
    return float(m["n"]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m["unit"] or "s"]


__all__ = [
    "OutcomeConstraint",
    "parameter_constraint_names",
    "parse_duration",
    "parse_outcome_constraint",
]
