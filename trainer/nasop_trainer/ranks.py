"""Where this process sits in a data-parallel trial, from the environment torchrun sets.

A trial with ``trial.replicas`` x ``trial.procsPerReplica`` > 1 is launched by torchrun, which
gives each process ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``. Lightning
then trains one model with DDP across all of them (gloo on CPU, NCCL on GPU): every rank trains
on its own shard of each epoch, gradients are averaged, so the weights stay identical. Only
global rank 0 reports under the trial contract; the others print nothing on stdout.
Stdlib only: read before torch is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's global rank, the world size, and its rank and process count on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def reports(self) -> bool:
        """Only global rank 0 reports metrics (the one model's, not a sum over ranks)."""
        return self.rank == 0

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // self.local_world_size)


def from_env(environ: dict[str, str] | None = None) -> Ranks:
    """The ranks torchrun set; a process started without torchrun is rank 0 of 1."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Ranks()
    return Ranks(
        rank=int(env.get("RANK", "0")),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
    )


def weights_digest(tensors: Iterable[Any]) -> str:
    """A sha256 of the weights' bytes: equal on every rank when they trained together."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["Ranks", "from_env", "weights_digest"]
