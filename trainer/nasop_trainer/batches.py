"""Mini-batches cut from tensors already in memory: the trainer's replacement for a DataLoader.

A DataLoader over a per-sample Dataset calls Python once per sample and collates each batch.
Here the data path is one ``index_select`` per *chunk* of several consecutive mini-batches of a
seeded permutation, and each mini-batch is then a view of its chunk: microseconds per batch,
nothing per sample, no worker processes. Lightning sees one chunk per training step (see
``model.MLP.training_step``), which spreads its per-step cost over several optimizer steps;
chunks are whole multiples of the batch size, so the mini-batches are exactly those of a plain
``batch_size`` loop over the same permutation. Each epoch's permutation comes from a generator
seeded with (seed, epoch), so runs repeat exactly and the order does not depend on the device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nasop_trainer import data

CHUNK_SAMPLES = 4096  # samples gathered per Lightning step; large batches get one per chunk

Batch = tuple[torch.Tensor, torch.Tensor]


def batches_per_chunk(batch_size: int, chunk_samples: int = CHUNK_SAMPLES) -> int:
    """How many mini-batches of ``batch_size`` one chunk holds (at least one)."""
    return max(1, chunk_samples // batch_size)


def mini_batches(chunk: Batch, batch_size: int) -> Iterator[Batch]:
    """The consecutive mini-batches of a chunk, as views (no copies)."""
    x, y = chunk
    for start in range(0, int(y.shape[0]), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


class Chunks:
    """An iterable of ``(x, y)`` chunks over a ``data.Split``; Lightning accepts it as a loader.

    Args:
        split: the tensors to cut from (on the training device).
        batch_size: samples per mini-batch; the epoch's last one may be smaller.
        shuffle: draw a new seeded permutation every epoch (training) or keep the order (eval).
        seed: the base seed of the permutations.
        per_chunk: mini-batches per chunk (1: every item is one mini-batch).
        rank: this process's rank in a data-parallel trial (``ranks.Ranks``).
        world: the number of ranks. Above 1 each rank takes every ``world``-th sample of the
            epoch's permutation (the same on every rank), padded by wrapping around as
            ``DistributedSampler`` does, so every rank steps the same number of times.
    """

    def __init__(
        self,
        split: data.Split,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        per_chunk: int = 1,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.split = split
        self.rank = rank
        self.world = world
        self.batch_size = batch_size
        self.chunk_size = batch_size * per_chunk
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def samples(self) -> int:
        """The samples this rank sees per epoch (evaluation, unshuffled, is never sharded)."""
        return -(-len(self.split) // self.world) if self.shuffle else len(self.split)

    def __len__(self) -> int:
        return -(-self.samples() // self.chunk_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``; drawn on the CPU so every device sees the same one."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.split), generator=generator).to(self.split.x.device)

    def __iter__(self) -> Iterator[Batch]:
        x, y, size = self.split.x, self.split.y, self.chunk_size
        if not self.shuffle:
            for start in range(0, len(self.split), size):
                yield x[start : start + size], y[start : start + size]
            return
        order = self.permutation(self.epoch)
        self.epoch += 1
        if self.world > 1:
            padded = self.samples() * self.world
            order = torch.cat([order, order[: padded - len(order)]])[self.rank :: self.world]
        for start in range(0, len(order), size):
            index = order[start : start + size]
            yield x.index_select(0, index), y.index_select(0, index)


__all__ = ["CHUNK_SAMPLES", "Batch", "Chunks", "batches_per_chunk", "mini_batches"]
