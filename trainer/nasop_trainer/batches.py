"""Mini-batches cut from tensors already in memory: the trainer's replacement for a DataLoader.

A DataLoader over a per-sample Dataset calls Python once per sample and collates each batch.
Here a batch is one ``index_select`` with a slice of a permutation, so the data path costs
microseconds per batch and nothing per sample, and there are no worker processes. Each epoch
draws a new permutation from a generator seeded with (seed, epoch), so runs repeat exactly and
the order does not depend on the device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nasop_trainer import data


class Batches:
    """An iterable of ``(x, y)`` batches over a ``data.Split``; Lightning accepts it as a loader.

    Args:
        split: the tensors to cut batches from (on the training device).
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: draw a new seeded permutation every epoch (training) or keep the order (eval).
        seed: the base seed of the permutations.
    """

    def __init__(self, split: data.Split, batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``; drawn on the CPU so every device sees the same one."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.split), generator=generator).to(self.split.x.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, size = self.split.x, self.split.y, self.batch_size
        if not self.shuffle:
            for start in range(0, len(self.split), size):
                yield x[start:start + size], y[start:start + size]
            return
        order = self.permutation(self.epoch)
        self.epoch += 1
        for start in range(0, len(self.split), size):
            index = order[start:start + size]
            yield x.index_select(0, index), y.index_select(0, index)


__all__ = ["Batches"]
