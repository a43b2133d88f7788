"""The tutorial's MLP (input -> h1 -> h2 -> 10 with ReLU and dropout, Adam) as a LightningModule.

Two things keep a small MLP's step cheap. Training uses Lightning's manual optimization over
chunks of mini-batches (``batches.Chunks``): one optimizer step per mini-batch as usual, but
Lightning's per-step hooks and closures run once per chunk, which at batch 32 otherwise cost as
much as the step itself. And per-epoch metrics stay on the device until ``epoch_metrics()``
reads them once: ``self.log`` or ``.item()`` on every step would force a sync each time.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from nasop_trainer import batches
from nasop_trainer.network import build_network, count_parameters  # the lone model's layers


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
        batch_size: samples per optimizer step (training items are chunks of such batches).
        num_classes: output classes.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size_1: int,
        hidden_size_2: int,
        learning_rate: float,
        dropout: float,
        batch_size: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # one Lightning step = one chunk of mini-batches
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.model = build_network(input_dim, hidden_size_1, hidden_size_2, dropout, num_classes)
        self._train_losses: list[torch.Tensor] = []  # on the device; read once per epoch
        self._train_sizes: list[int] = []
        self._val_sums: dict[str, torch.Tensor] = {}
        self._val_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        self._train_losses, self._train_sizes = [], []

    def training_step(self, chunk: batches.Batch, chunk_idx: int) -> None:
        optimizer = self.optimizers()
        for x, y in batches.mini_batches(chunk, self.batch_size):
            loss = F.nll_loss(self(x), y)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            self._train_losses.append(loss.detach())
            self._train_sizes.append(int(y.shape[0]))

    def on_validation_epoch_start(self) -> None:
        self._val_sums, self._val_count = {}, 0

    def validation_step(self, batch: batches.Batch, batch_idx: int) -> None:
        x, y = batch
        log_probs = self(x)
        for name, value in (
            ("loss", F.nll_loss(log_probs, y, reduction="sum")),
            ("correct", (log_probs.argmax(dim=1) == y).sum()),
        ):
            self._val_sums[name] = self._val_sums[name] + value if name in self._val_sums else value
        self._val_count += int(y.shape[0])

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's ``train_loss``, ``val_loss`` and ``val_acc`` (means over samples)."""
        metrics = {}
        if self._train_sizes:
            losses = torch.stack(self._train_losses).double()
            sizes = torch.tensor(self._train_sizes, dtype=torch.float64, device=losses.device)
            metrics["train_loss"] = float(losses @ sizes) / sum(self._train_sizes)
        if self._val_count:
            metrics["val_loss"] = float(self._val_sums["loss"]) / self._val_count
            metrics["val_acc"] = float(self._val_sums["correct"]) / self._val_count
        return metrics

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_adam(list(self.parameters()), self.learning_rate)


__all__ = ["MLP", "build_network", "count_parameters", "make_adam"]
