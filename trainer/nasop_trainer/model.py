"""The tutorial's MLP (input -> h1 -> h2 -> 10 with ReLU and dropout, Adam) as a LightningModule.

Per-epoch metrics are summed on the device inside the steps and read once per epoch by
``epoch_metrics()``: calling ``self.log`` or ``.item()`` every step would cost more than a
small MLP's step itself.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn


def build_network(input_dim: int, hidden_size_1: int, hidden_size_2: int, dropout: float,
                  num_classes: int = 10) -> nn.Sequential:
    """The tutorial's layers, ending in log-probabilities (so NLL loss and latency match it)."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_size_1), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden_size_1, hidden_size_2), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden_size_2, num_classes), nn.LogSoftmax(dim=1),
    )


def count_parameters(module: nn.Module) -> int:
    """The exact number of trainable parameters: the ``num_params`` objective."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def make_adam(params: list[nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam, fused where this torch supports it: per-tensor Python steps dominate a tiny MLP."""
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):  # torch < 2.4 on CPU has no fused Adam
        return torch.optim.Adam(params, lr=learning_rate)


class MLP(pl.LightningModule):
    """Classifies flattened images; ``model`` is a plain ``nn.Sequential`` for latency timing.

    Args:
        input_dim: features per sample (784 for MNIST, 64 for digits).
        hidden_size_1: width of the first hidden layer.
        hidden_size_2: width of the second hidden layer.
        learning_rate: Adam's learning rate.
        dropout: dropout probability after each hidden layer.
        num_classes: output classes.
    """

    def __init__(self, input_dim: int, hidden_size_1: int, hidden_size_2: int,
                 learning_rate: float, dropout: float, num_classes: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.learning_rate = learning_rate
        self.model = build_network(input_dim, hidden_size_1, hidden_size_2, dropout, num_classes)
        self._sums: dict[str, torch.Tensor] = {}  # on the device; read once per epoch
        self._counts: dict[str, int] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _accumulate(self, name: str, value: torch.Tensor) -> None:
        self._sums[name] = self._sums[name] + value if name in self._sums else value

    def on_train_epoch_start(self) -> None:
        self._sums, self._counts = {}, {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self._accumulate("train_loss", loss.detach() * y.shape[0])
        self._counts["train"] = self._counts.get("train", 0) + y.shape[0]
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val_loss", None)
        self._sums.pop("val_correct", None)
        self._counts["val"] = 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        log_probs = self(x)
        self._accumulate("val_loss", F.nll_loss(log_probs, y, reduction="sum"))
        self._accumulate("val_correct", (log_probs.argmax(dim=1) == y).sum())
        self._counts["val"] = self._counts.get("val", 0) + y.shape[0]

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's ``train_loss``, ``val_loss`` and ``val_acc`` (means over samples)."""
        sums = {name: float(value) for name, value in self._sums.items()}
        metrics = {}
        if self._counts.get("train"):
            metrics["train_loss"] = sums["train_loss"] / self._counts["train"]
        if self._counts.get("val"):
            metrics["val_loss"] = sums["val_loss"] / self._counts["val"]
            metrics["val_acc"] = sums["val_correct"] / self._counts["val"]
        return metrics

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_adam(list(self.parameters()), self.learning_rate)


__all__ = ["MLP", "build_network", "count_parameters", "make_adam"]
