"""The trial contract's output: each point on stdout, final values in the termination message,
and TensorBoard scalars for people.

``val_acc``, ``val_loss`` and ``train_loss`` are learning curves (one point per epoch, printed and
flushed at once so the operator's early stopping can read a running trial); ``num_params`` (at
the start) and ``latency_ms`` (after training) are final values at step 0. A lone trial and every
member of a pack report through a ``Reporter``, so the operator reads both the same way. No
Lightning here: the packed trainer does not load it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from torch.utils.tensorboard import SummaryWriter

from nasop import results

CURVES = ("val_acc", "val_loss", "train_loss")


class Reporter:
    """One trial's (or pack member's) points: a ``NASOP1`` line each on ``out``, and the same
    scalars in TensorBoard files under ``log_dir`` (when given).

    A ``silent`` reporter (every rank but global rank 0 of a data-parallel trial) keeps the
    values but prints and writes nothing: the trial's metrics are rank 0's, reported once.
    """

    def __init__(
        self,
        log_dir: Path | None,
        member: int | None = None,
        out: TextIO | None = None,
        silent: bool = False,
    ) -> None:
        self.member = member
        self.out = out
        self.silent = silent
        self.seq = 0
        self.finals: dict[str, tuple[int, float]] = {}
        self.writer: SummaryWriter | None = None
        if log_dir is not None and not silent:
            log_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(log_dir))

    def _print(self, line: str) -> None:
        if self.silent:
            return
        print(line, file=self.out or sys.stdout, flush=True)
        self.seq += 1

    def point(self, step: int, values: Mapping[str, float]) -> None:
        """One logged point: printed, kept as the metric's latest value, written to TensorBoard."""
        if not values:
            return
        self._print(results.format_point(self.seq, step, dict(values), self.member))
        for tag, value in values.items():
            self.finals[tag] = (step, float(value))
            if self.writer is not None:
                self.writer.add_scalar(tag, value, global_step=step)
        if self.writer is not None:
            self.writer.flush()

    def start(self, params: Mapping[str, Any], num_params: int) -> None:
        """What a trial reports before training: its parameters (text) and ``num_params``."""
        if self.writer is not None:
            self.writer.add_text("params", json.dumps(dict(params)), global_step=0)
        self.point(0, {"num_params": num_params})

    def final(self, tag: str, value: float) -> None:
        """A metric reported once (step 0)."""
        self.point(0, {tag: value})

    def epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """One epoch's learning-curve points."""
        self.point(epoch, {tag: values[tag] for tag in CURVES if tag in values})

    def end(self, state: str, reason: str = "") -> None:
        """A pack member's end, printed so the operator learns it from the log."""
        if self.member is not None:
            self._print(results.lines.format_end(self.seq, self.member, state, reason))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_termination(finals: dict[str, tuple[int, float]], lines: int | None = None) -> None:
    """A lone trial's final values into its termination message (when it has one), with how
    many lines it printed (the reader then knows of any lost after the last it read)."""
    results.write_final(results.encode_final(finals, lines=lines))


def write_pack_termination(members: dict[int, dict[str, Any]]) -> None:
    """Each pack member's end and final values into the pack's termination message; a pack too
    large for 4 KiB keeps only the members' ends there (its lines on stdout hold the values)."""
    try:
        message = results.encode_final({}, members)
    except ValueError:
        ends = {i: {"state": m["state"], "reason": m.get("reason", "")} for i, m in members.items()}
        try:
            message = results.encode_final({}, ends)
        except ValueError:
            return
    results.write_final(message)


def progress(epoch: int, values: Mapping[str, float], seconds: float, who: str = "") -> None:
    """One progress line on stderr (stdout carries the contract's lines and the result)."""
    shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
    print(
        f"nasop-trainer: {who}epoch {epoch}: {shown} ({seconds:.2f}s)", file=sys.stderr, flush=True
    )


__all__ = ["CURVES", "Reporter", "progress", "write_pack_termination", "write_termination"]
