"""The plain torch side of a trial, shared by the lone (Lightning) and the packed trainer.

The tutorial's layers, their parameter count, and the device and float type a run asks for. No
Lightning here, so a pack, which does not use it, starts without importing it.
"""

from __future__ import annotations

import torch
from torch import nn

from nasop_trainer import cli, data, errors


def build_network(
    input_dim: int, hidden_size_1: int, hidden_size_2: int, dropout: float, num_classes: int = 10
) -> nn.Sequential:
    """The tutorial's layers, ending in log-probabilities (so NLL loss and latency match it)."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_size_1),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size_1, hidden_size_2),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size_2, num_classes),
        nn.LogSoftmax(dim=1),
    )


def count_parameters(module: nn.Module) -> int:
    """The exact number of trainable parameters: the ``num_params`` objective."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def dtype_of(config: cli.Config) -> torch.dtype:
    """The float type of weights and data that ``--precision`` asks for."""
    return torch.float64 if config.precision == 64 else torch.float32


def resolve_device(accelerator: str, local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA when visible; ``gpu`` without CUDA is a usage error, not a CPU run.
    A rank of a data-parallel trial takes the GPU of its ``local_rank``, as Lightning does."""
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise errors.UsageError(
            "--accelerator gpu: no CUDA device is visible", hint="use --accelerator cpu or auto"
        )
    if accelerator in ("gpu", "auto") and torch.cuda.is_available():
        index = torch.cuda.current_device() if local_rank is None else local_rank
        return torch.device("cuda", index)
    return torch.device("cpu")


def prepare(config: cli.Config, local_rank: int | None = None) -> tuple[torch.device, data.DataSet]:
    """The run's torch threads, its device, and the data set on that device in its float type:
    the same start for a lone trial, a rank of a data-parallel one, and a pack."""
    torch.set_num_threads(config.threads)
    device = resolve_device(config.accelerator, local_rank)
    dataset = data.load(
        config.dataset,
        config.data_dir,
        download=config.download,
        subset=config.subset,
        device=device,
        dtype=dtype_of(config),
    )
    return device, dataset


__all__ = ["build_network", "count_parameters", "dtype_of", "prepare", "resolve_device"]
