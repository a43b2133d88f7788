"""Steady-state epoch time of nasop_trainer against the tutorial-style pipeline, in one run.

The baseline is what the PyTorch "Multi-Objective NAS with Ax" tutorial does: a torch Dataset
that turns each sample into a PIL image, then ToTensor and Normalize (written out by hand as
torchvision's code does them, since torchvision cannot be installed beside this torch), a
``DataLoader(batch_size, shuffle=True)``, torchmetrics accuracy logged with ``self.log``, plain
Adam and a near-default Lightning Trainer (TensorBoard logger, checkpointing on, progress bar off
as in the tutorial). nasop_trainer runs through its real ``train()`` (TensorBoard writing
included). Both use one torch thread and the same data; an epoch is training plus validation,
timed from ``on_train_epoch_start`` to ``on_train_epoch_end``; the first epoch (warm-up) is
not counted and the best of the others is reported (the least disturbed by other load).

Usage (from the repo root): ``python bench/trainer_epoch.py [--data PATH] [--epochs 2]``.
Full MNIST is read from ``../shared/data/mnist.npz`` when present, else digits is used.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nasop_trainer import cli, data, train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "mnist.npz"
POINTS = [(64, 32), (64, 256), (128, 32), (128, 256)]  # (hidden size, batch size)
MEAN, STD = (0.1307,), (0.3081,)


class EpochTimer(pl.Callback):
    """Wall time of each epoch (training + validation)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class PerSampleImages(Dataset):
    """torchvision's MNIST ``__getitem__`` with ``ToTensor()`` and ``Normalize`` inlined."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.data = torch.from_numpy(images)
        self.targets = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, target = self.data[index], int(self.targets[index])
        pic = Image.fromarray(img.numpy())  # mode "L"
        # transforms.ToTensor(): PIL -> uint8 HWC -> float CHW in [0, 1]
        tensor = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        tensor = tensor.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        tensor = tensor.to(dtype=torch.get_default_dtype()).div(255)
        # transforms.Normalize(MEAN, STD)
        mean = torch.as_tensor(MEAN, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(STD, dtype=tensor.dtype, device=tensor.device)
        if (std == 0).any():
            raise ValueError("std evaluated to zero")
        tensor.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
        return tensor, target


class TutorialModel(pl.LightningModule):
    """The tutorial's ``MnistModel``: Flatten + MLP, log_softmax, NLL, torchmetrics Accuracy."""

    def __init__(self, input_dim: int, hidden: int, batch_size: int, arrays: dict) -> None:
        super().__init__()
        self.batch_size, self.arrays = batch_size, arrays
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 10),
        )
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.model(x), dim=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.nll_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.nll_loss(logits, y))
        self.val_acc.update(torch.argmax(logits, dim=1), y)
        self.log("val_acc", self.val_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    def train_dataloader(self) -> DataLoader:
        a = self.arrays
        return DataLoader(
            PerSampleImages(a["x_train"], a["y_train"]), batch_size=self.batch_size, shuffle=True
        )

    def val_dataloader(self) -> DataLoader:
        a = self.arrays
        return DataLoader(PerSampleImages(a["x_test"], a["y_test"]), batch_size=self.batch_size)


def steady(seconds: list[float]) -> float:
    """Best epoch time after the first (warm-up) epoch: the least disturbed by other load."""
    return min(seconds[1:] if len(seconds) > 1 else seconds)


def time_baseline(arrays: dict, hidden: int, batch: int, epochs: int, tmp: Path) -> float:
    pl.seed_everything(0, verbose=False)
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        deterministic=True,
        logger=TensorBoardLogger(str(tmp), name="baseline"),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp),
        callbacks=[timer],
    )
    input_dim = int(np.prod(arrays["x_train"].shape[1:]))
    trainer.fit(TutorialModel(input_dim, hidden, batch, arrays))
    return steady(timer.seconds)


def time_nasop(data_args: list[str], hidden: int, batch: int, epochs: int, tmp: Path) -> float:
    timer = EpochTimer()
    config = cli.parse(
        [
            *data_args,
            f"--hidden_size_1={hidden}",
            f"--hidden_size_2={hidden}",
            f"--batch_size={batch}",
            f"--epochs={epochs}",
            "--accelerator=cpu",
            "--threads=1",
            f"--log-dir={tmp / f'nasop-{hidden}-{batch}'}",
        ],
        environ={},
    )
    train.train(config, callbacks=[timer])
    return steady(timer.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_NPZ, help="an MNIST npz")
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs per run; the first is warm-up, the best of the rest counts",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")

    if args.data.is_file():
        arrays, data_args, name = (
            data.mnist_arrays(args.data),
            ["--dataset=mnist", f"--data-dir={args.data}"],
            "MNIST",
        )
    else:  # digits as uint8 8x8 images, so the baseline's PIL path still applies
        arrays = {
            k: (v * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8) if k[0] == "x" else v
            for k, v in data.digits_arrays().items()
        }
        data_args, name = ["--dataset=digits"], "digits"
    n_train, n_val = len(arrays["y_train"]), len(arrays["y_test"])
    print(
        f"data: {name} ({n_train} train, {n_val} val), {args.epochs} epochs per run, "
        f"1 thread, torch {torch.__version__}, lightning {pl.__version__}",
        flush=True,
    )
    print("| h1=h2 | batch | nasop-trainer s/epoch | tutorial-style s/epoch | speed-up |")
    print("|---:|---:|---:|---:|---:|", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for hidden, batch in POINTS:
            ours = time_nasop(data_args, hidden, batch, args.epochs, tmp)
            base = time_baseline(arrays, hidden, batch, args.epochs, tmp)
            print(
                f"| {hidden} | {batch} | {ours:.2f} | {base:.2f} | {base / ours:.1f}x |", flush=True
            )


if __name__ == "__main__":
    sys.exit(main())
