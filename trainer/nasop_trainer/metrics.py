"""TensorBoard output of the trial contract: tags nasop reads, with step = epoch index.

``val_acc``, ``val_loss`` and ``train_loss`` are learning curves (one point per epoch, flushed
at once so the operator's early stopping can read a running trial); ``num_params`` (at the start)
and ``latency_ms`` (after training) are final values at step 0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.tensorboard import SummaryWriter

CURVES = ("val_acc", "val_loss", "train_loss")


def open_writer(log_dir: Path) -> SummaryWriter:
    """A SummaryWriter on ``log_dir`` (created if missing)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(log_dir))


def write_final(writer: SummaryWriter, tag: str, value: float) -> None:
    """Writes a metric logged once (step 0) and flushes it."""
    writer.add_scalar(tag, value, global_step=0)
    writer.flush()


class EpochScalars(pl.Callback):
    """Writes the module's ``epoch_metrics()`` at step = epoch after each validation.

    Also keeps them in ``history`` and prints a one-line progress note to stderr (stdout is
    kept for the final JSON line).
    """

    def __init__(self, writer: SummaryWriter) -> None:
        self.writer = writer
        self.history: list[dict[str, float]] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2 validates before this hook, so train and val sums are both complete here.
        epoch = trainer.current_epoch
        metrics = pl_module.epoch_metrics()  # type: ignore[operator]
        for tag in CURVES:
            if tag in metrics:
                self.writer.add_scalar(tag, metrics[tag], global_step=epoch)
        self.writer.flush()
        self.history.append(metrics)
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self._started
        print(f"nasop-trainer: epoch {epoch}: {shown} ({elapsed:.2f}s)", file=sys.stderr, flush=True)


__all__ = ["CURVES", "EpochScalars", "open_writer", "write_final"]
