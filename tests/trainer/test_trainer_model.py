"""The tutorial MLP, its parameter count and the latency measurement (in-process)."""

from __future__ import annotations

import pytest
import torch

from nasop_trainer import latency, model


def expected_params(input_dim: int, h1: int, h2: int, classes: int = 10) -> int:
    return input_dim * h1 + h1 + h1 * h2 + h2 + h2 * classes + classes


@pytest.mark.parametrize(("input_dim", "h1", "h2"), [(784, 128, 64), (64, 16, 16), (64, 1, 3)])
def test_num_params_is_the_exact_trainable_count(input_dim: int, h1: int, h2: int) -> None:
    module = model.MLP(input_dim, h1, h2, learning_rate=1e-3, dropout=0.1, batch_size=8)
    assert model.count_parameters(module) == expected_params(input_dim, h1, h2)


def test_forward_gives_log_probabilities() -> None:
    module = model.MLP(64, 8, 4, learning_rate=1e-3, dropout=0.0, batch_size=8)
    out = module(torch.randn(5, 64))
    assert out.shape == (5, 10)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(5), atol=1e-5)


def test_latency_is_positive_and_leaves_the_network_alone() -> None:
    network = model.build_network(64, 8, 4, dropout=0.2)
    before = [p.clone() for p in network.parameters()]
    ms = latency.measure_ms(network, 64, runs=5, warmup=1)
    assert 0 < ms < 1000
    assert network.training
    assert all(torch.equal(a, b) for a, b in zip(before, network.parameters(), strict=True))
