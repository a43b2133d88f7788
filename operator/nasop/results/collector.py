"""Everything one trial reported, validated and keyed, from lines read in any order or twice.

The reader (a local stdout file, a pod's log) feeds raw bytes; the collector splits lines with a
cap on length, parses them (`lines`), keeps only declared metrics at sane steps with finite
values, and keys each point by (member, metric, step), so reading the same log twice (an operator
restart, overlapping `sinceTime` windows) records nothing twice. Every refused line is counted
by reason; a gap in a member's sequence numbers is remembered, so nothing is lost silently.
Values of metrics the manifest does not name are not recorded, only counted by name (a trainer
may report more than a search optimises: that is not an error).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from nasop.results import lines

MAX_LINE_BYTES = 64 * 1024  # a longer line is skipped and counted, never buffered whole
MAX_IGNORED = 32  # undeclared metric names counted per trial


class LineSplitter:
    """Bytes in, complete lines out; a line over ``max_line`` bytes is dropped as it streams."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self.too_long = 0

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._hold(chunk[start:])
                return out
            piece = chunk[start:end]
            if not self._skipping and len(self._buf) + len(piece) <= self.max_line:
                self._buf += piece
                out.append(self._buf.decode("utf-8", "replace").rstrip("\r"))
            elif not self._skipping:
                self.too_long += 1
            self._buf.clear()
            self._skipping = False
            start = end + 1

    def _hold(self, rest: bytes) -> None:
        if self._skipping:
            return
        if len(self._buf) + len(rest) > self.max_line:
            self._buf.clear()
            self._skipping = True
            self.too_long += 1
            return
        self._buf += rest

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)


class Collector:
    """One trial's (or one pack's) reported points, finals, ends and refusals."""

    def __init__(
        self,
        declared: Iterable[str],
        fmt: str = lines.NASOP,
        members: Iterable[int] | None = None,
    ) -> None:
        self.declared = frozenset(declared)
        self.fmt = fmt
        self.members = frozenset(members) if members is not None else None
        self.points: dict[tuple[int | None, str, int], float] = {}
        self.rejected: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()  # undeclared metric name -> values not recorded
        self.ends: dict[int, tuple[str, str]] = {}
        self.finals: dict[int | None, dict[str, tuple[int, float]]] = {}
        self.gaps: list[tuple[int | None, int, int]] = []
        #: NaN or infinite values, kept apart: a curve that ends in them has no final value
        self.non_finite: dict[tuple[int | None, str, int], float] = {}
        self._last_seq: dict[int | None, int] = {}
        #: lines printed, by member, as the termination message says (the trial's next seq)
        self.printed: dict[int | None, int] = {}
        self._katib_steps: Counter[str] = Counter()

    # -- lines -------------------------------------------------------------------------

    def feed_line(self, line: str) -> None:
        if self.fmt == lines.KATIB:
            for name, value in lines.parse_katib(line, self.declared).items():
                step = self._katib_steps[name]
                self._katib_steps[name] += 1
                self._put(None, name, step, value)
            return
        record = lines.parse_nasop(line)
        if record is None:
            return  # ordinary output
        if isinstance(record, str):
            self.rejected[record] += 1
            return
        member = record.member
        if self.members is None:
            self._sequence(None, record.seq)  # every line of a lone trial is in its sequence
            if member is not None:
                self.rejected["member index from a lone trial"] += 1
                return
        elif member not in self.members:
            self.rejected["member index not in this pack"] += 1
            return
        else:
            self._sequence(member, record.seq)
        if record.end is not None:
            assert member is not None  # parse_nasop refuses an end without a member
            self.ends.setdefault(member, (record.end, record.reason))
            return
        for name, value in record.values.items():
            if name not in self.declared:
                self._ignore(name)
                continue
            self._put(member, name, record.step or 0, value)

    def _ignore(self, name: str) -> None:
        """A metric the manifest does not name is not recorded; its name is counted (at most
        MAX_IGNORED names), since a trainer may well report more than a search optimises."""
        if name in self.ignored or len(self.ignored) < MAX_IGNORED:
            self.ignored[name] += 1

    def _sequence(self, member: int | None, seq: int | None) -> None:
        """Remember a gap in the member's sequence. Sequences start at 0 (the contract), so a
        first line read past 0 follows lost ones too: the kubelet serves only the current file
        of a rotated log, and the lines rotated away before a read are gone."""
        if seq is None:
            return
        last = self._last_seq.get(member, -1)
        if seq > last + 1:
            self.gaps.append((member, last + 1, seq - 1))
        if seq > last:
            self._last_seq[member] = seq

    def _put(self, member: int | None, metric: str, step: int, value: float) -> None:
        key = (member, metric, step)
        if not math.isfinite(value):
            self.non_finite.setdefault(key, value)
            return
        seen = self.points.get(key)
        if seen is None:
            self.points[key] = value
        elif seen != value:
            self.rejected["conflicting value for a step already reported"] += 1

    # -- termination message ---------------------------------------------------------

    def add_printed(self, member: int | None, lines: int) -> None:
        """How many lines the member printed (its termination message says): the lines after
        the last one read are missing too, which no later line would show."""
        self.printed[member] = lines

    def missing(self) -> list[tuple[int | None, int, int]]:
        """Every known gap: between lines read, and after the last one read up to what the
        termination message says was printed (lost when a log rotated near the end)."""
        tail = [
            (member, self._last_seq.get(member, -1) + 1, lines - 1)
            for member, lines in self.printed.items()
            if lines - 1 > self._last_seq.get(member, -1)
        ]
        return self.gaps + tail

    def add_final(self, member: int | None, final: dict[str, tuple[int, float]]) -> None:
        """Final values from the termination message: each is also the point at its step."""
        kept = {k: v for k, v in final.items() if k in self.declared}
        self.finals[member] = kept
        for name, (step, value) in kept.items():
            self._put(member, name, step, value)

    # -- reading ---------------------------------------------------------------------

    def curve(
        self, metric: str, member: int | None = None, finite_only: bool = True
    ) -> list[tuple[int, float]]:
        """(step, value) of one metric, by step; with ``finite_only=False`` its NaN and
        infinite values too (at steps with no finite value)."""
        stored = [self.points] if finite_only else [self.non_finite, self.points]
        out = {
            s: v
            for store in stored
            for (m, k, s), v in store.items()
            if m == member and k == metric
        }
        return sorted(out.items())

    def problems(self) -> str:
        """Refused lines by reason and gaps, in one line ("" when there were none)."""
        parts = [f"{n} x {reason}" for reason, n in self.rejected.most_common()]
        gaps = self.missing()
        if gaps:
            missing = sum(b - a + 1 for _, a, b in gaps)
            parts.append(f"{missing} lines missing (sequence gaps)")
        return "; ".join(parts)


__all__ = ["MAX_LINE_BYTES", "Collector", "LineSplitter"]
