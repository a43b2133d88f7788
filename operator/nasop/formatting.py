"""How nasop shows a metric or parameter value to a person (CLI table, events, report).

One function, so the terminal, the status messages and the HTML report agree on what a value
looks like; callers choose only how many significant digits they have room for.
"""

from __future__ import annotations

from typing import Any


def number(value: Any, digits: int = 4) -> str:
    """`value` to `digits` significant digits; a whole float (a parameter count) in full.

    Anything that is not a float (an int, a choice's string, a missing value's "") is shown as
    `str(value)`.
    """
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def seconds(value: float) -> str:
    """A duration as a person reads it: 42s, 12m30s, 1h05m."""
    total = max(0, round(value))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        m, s = divmod(total, 60)
        return f"{m}m{s:02d}s" if s else f"{m}m"
    h, rest = divmod(total, 3600)
    return f"{h}h{rest // 60:02d}m"


__all__ = ["number", "seconds"]
