"""``latency_ms``: the median CPU time of one batch-1 forward pass of the trained network.

Measured on a CPU copy in eval mode under ``inference_mode`` after warm-up runs, with the
process's torch thread count, so the number means the same on every trial whatever the
accelerator trained it. The median ignores the odd pause from a busy node.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn


def measure_ms(network: nn.Module, input_dim: int, *, runs: int = 50, warmup: int = 10) -> float:
    """Times ``runs`` batch-1 forward passes of a CPU copy of ``network``.

    Args:
        network: a plain module (not a LightningModule, which would drag its Trainer along).
        input_dim: features of the one input sample.
        runs: timed passes; the median is returned.
        warmup: untimed passes first (allocator and kernel selection).

    Returns:
        The median latency in milliseconds.
    """
    cpu_copy = copy.deepcopy(network).to("cpu").eval()
    sample = torch.zeros(1, input_dim, dtype=next(cpu_copy.parameters()).dtype)
    timings = []
    with torch.inference_mode():
        for _ in range(warmup):
            cpu_copy(sample)
        for _ in range(runs):
            start = time.perf_counter_ns()
            cpu_copy(sample)
            timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1e6


__all__ = ["measure_ms"]
