"""Where a process sits in a data-parallel trial (torchrun's environment)."""

from __future__ import annotations

import torch

from nasop_trainer import metrics, ranks


def test_without_torchrun_a_process_is_rank_zero_of_one() -> None:
    where = ranks.from_env({})
    assert (where.distributed, where.reports, where.num_nodes) == (False, True, 1)


def test_torchrun_environment() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    where = ranks.from_env(env)
    assert (where.distributed, where.reports, where.num_nodes, where.local_rank) == (
        True,
        False,
        2,
        1,
    )


def test_digest_tells_weights_apart() -> None:
    a = [torch.ones(3), torch.zeros(2)]
    assert ranks.weights_digest(a) == ranks.weights_digest([t.clone() for t in a])
    b = [torch.ones(3), torch.tensor([0.0, 1e-7])]
    assert ranks.weights_digest(a) != ranks.weights_digest(b)


def test_a_silent_reporter_keeps_values_but_prints_nothing(capsys, tmp_path) -> None:
    reporter = metrics.Reporter(tmp_path / "tb", silent=True)
    reporter.point(2, {"val_acc": 0.5})
    assert reporter.finals == {"val_acc": (2, 0.5)}
    assert capsys.readouterr().out == "" and not (tmp_path / "tb").exists()
