"""TensorBoard output of the trial contract: tags nasop reads, with step = epoch index.

``val_acc``, ``val_loss`` and ``train_loss`` are learning curves (one point per epoch, flushed
at once so the operator's early stopping can read a running trial); ``num_params`` (at the start)
and ``latency_ms`` (after training) are final values at step 0. A lone trial and every member of
a pack write through these functions, so the operator reads both the same way. No Lightning here:
the packed trainer does not load it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

CURVES = ("val_acc", "val_loss", "train_loss")


def open_writer(log_dir: Path) -> SummaryWriter:
    """A SummaryWriter on ``log_dir`` (created if missing)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(log_dir))


def write_start(writer: SummaryWriter, params: Mapping[str, Any], num_params: int) -> None:
    """What a trial writes before training: its parameters (text) and ``num_params``."""
    writer.add_text("params", json.dumps(dict(params)), global_step=0)
    write_final(writer, "num_params", num_params)


def write_final(writer: SummaryWriter, tag: str, value: float) -> None:
    """Writes a metric logged once (step 0) and flushes it."""
    writer.add_scalar(tag, value, global_step=0)
    writer.flush()


def write_epoch(writer: SummaryWriter, epoch: int, values: Mapping[str, float]) -> None:
    """Writes one epoch's learning-curve points and flushes them for early stopping."""
    for tag in CURVES:
        if tag in values:
            writer.add_scalar(tag, values[tag], global_step=epoch)
    writer.flush()


def progress(epoch: int, values: Mapping[str, float], seconds: float, who: str = "") -> None:
    """One progress line on stderr (stdout is kept for the final JSON line)."""
    shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
    print(
        f"nasop-trainer: {who}epoch {epoch}: {shown} ({seconds:.2f}s)", file=sys.stderr, flush=True
    )


__all__ = ["CURVES", "open_writer", "progress", "write_epoch", "write_final", "write_start"]
