"""A pack trains each member exactly as its lone run: same losses, same weights, own metrics.

The lone runs are the real Lightning trainer (``train.train``) in this process; the packs are
``pack.run`` (float64 exactness) and ``python -m nasop_trainer`` with ``NASOP_PACK`` (float32,
what the engine launches). "Relative" below is the largest difference over the largest value of
the tensor compared, so a weight near zero is not held to a tolerance below rounding.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nasop.local import member_files
from nasop_trainer import cli, pack, packed

Scalars = dict[str, list[tuple[int, float]]]

pytestmark = pytest.mark.timeout(600)

SEED = 7
# (h1, h2, learning rate, epochs): different widths (so padding), rates and lengths
MEMBERS = [(24, 12, 1e-3, 3), (8, 20, 3e-3, 2), (32, 32, 5e-4, 1), (16, 6, 1e-2, 3)]
RELATIVE = 1e-9


def member_params(h1: int, h2: int, lr: float, epochs: int) -> dict[str, float | int]:
    return {
        "hidden_size_1": h1,
        "hidden_size_2": h2,
        "learning_rate": lr,
        "epochs": epochs,
        "dropout": 0.0,
        "batch_size": 32,
    }


def shared_flags(precision: int, log_dir: Path) -> list[str]:
    return [
        "--dataset=digits",
        f"--seed={SEED}",
        f"--precision={precision}",
        "--latency-runs=3",
        f"--log-dir={log_dir}",
    ]


@dataclasses.dataclass
class Trace:
    """Per epoch: the mini-batch losses and the weights (lone layout) at the epoch's end."""

    losses: list[torch.Tensor] = dataclasses.field(default_factory=list)
    weights: list[list[torch.Tensor]] = dataclasses.field(default_factory=list)


def lone_trace(params: dict[str, float | int], precision: int, log_dir: Path) -> Trace:
    """Runs the lone Lightning trainer and records its steps."""
    import lightning.pytorch as pl

    from nasop_trainer import train

    trace = Trace()

    class Recorder(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            trace.losses.append(torch.stack(module._train_losses).detach().clone())
            trace.weights.append([p.detach().clone() for p in module.model.parameters()])

    argv = shared_flags(precision, log_dir) + [f"--{k}={v}" for k, v in params.items()]
    train.train(cli.parse(argv, environ={}), callbacks=[Recorder()])
    return trace


def pack_traces(
    config: cli.Config, members: list[pack.Member]
) -> tuple[dict[str, Trace], list[dict[str, torch.Tensor]]]:
    """Runs a pack in this process; each member's trace and each epoch's padding."""
    traces: dict[str, Trace] = {m.trial: Trace() for m in members}
    paddings: list[dict[str, torch.Tensor]] = []

    def observe(report: pack.EpochReport) -> None:
        for slot, trial in enumerate(report.trials):
            traces[trial].losses.append(report.step_losses[:, slot].clone())
            traces[trial].weights.append(
                [p.detach().clone() for p in report.stack.network(slot).parameters()]
            )
        paddings.append(report.stack.padding())

    pack.run(config, members, observe=observe)
    return traces, paddings


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))


def assert_same_run(got: Trace, want: Trace) -> None:
    assert len(got.losses) == len(want.losses)  # as many epochs
    for epoch, (got_loss, want_loss) in enumerate(zip(got.losses, want.losses, strict=True)):
        assert got_loss.dtype == want_loss.dtype == torch.float64
        assert got_loss.shape == want_loss.shape, f"epoch {epoch}: steps differ"
        assert relative_error(got_loss, want_loss) < RELATIVE, f"epoch {epoch} losses"
        for got_w, want_w in zip(got.weights[epoch], want.weights[epoch], strict=True):
            assert got_w.shape == want_w.shape
            assert relative_error(got_w, want_w) < RELATIVE, f"epoch {epoch} weights"


def members_in(root: Path) -> list[pack.Member]:
    return [pack.Member(str(i), member_params(*m), root / f"m{i}") for i, m in enumerate(MEMBERS)]


@pytest.fixture(scope="module")
def float64_pack(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Trace], list[dict[str, torch.Tensor]], Path]:
    root = tmp_path_factory.mktemp("pack64")
    config = cli.parse(shared_flags(64, root / "unused"), environ={})
    traces, paddings = pack_traces(config, members_in(root))
    return traces, paddings, root


@pytest.mark.parametrize("index", range(len(MEMBERS)))
def test_float64_member_steps_and_weights_equal_its_lone_run(
    index: int, float64_pack: tuple[dict[str, Trace], list, Path], tmp_path: Path
) -> None:
    traces, _, _ = float64_pack
    want = lone_trace(member_params(*MEMBERS[index]), 64, tmp_path)
    assert len(want.losses) == MEMBERS[index][3]
    assert_same_run(traces[str(index)], want)


def test_padded_weights_stay_exactly_zero(float64_pack: tuple[dict, list, Path]) -> None:
    _, paddings, _ = float64_pack
    assert sum(t.numel() for t in paddings[0].values()) > 0  # the widths differ: there is padding
    for epoch in paddings:
        for name, values in epoch.items():
            assert torch.count_nonzero(values) == 0, name


def test_each_member_records_its_end_and_its_own_curves(
    float64_pack: tuple[dict, list, Path], scalars: Callable[[Path], Scalars]
) -> None:
    _, _, root = float64_pack
    for i, (h1, h2, _, epochs) in enumerate(MEMBERS):
        log_dir = root / f"m{i}"
        assert member_files.read_end(str(log_dir)) == {"state": "completed", "reason": ""}
        found = scalars(log_dir)
        assert [step for step, _ in found["val_acc"]] == list(range(epochs))
        assert found["num_params"] == [(0, 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10)]
        assert len(found["latency_ms"]) == 1 and found["latency_ms"][0][1] > 0


def test_a_pack_of_one_equals_the_lone_trainer(
    tmp_path: Path, scalars: Callable[[Path], Scalars]
) -> None:
    params = member_params(20, 10, 2e-3, 2)
    config = cli.parse(shared_flags(64, tmp_path / "unused"), environ={})
    traces, _ = pack_traces(config, [pack.Member("0", params, tmp_path / "packed")])
    want = lone_trace(params, 64, tmp_path / "lone")
    assert_same_run(traces["0"], want)
    got_curves, want_curves = scalars(tmp_path / "packed"), scalars(tmp_path / "lone")
    for tag in ("val_acc", "num_params"):
        assert got_curves[tag] == want_curves[tag]
    for tag in ("val_loss", "train_loss"):
        assert [s for s, _ in got_curves[tag]] == [s for s, _ in want_curves[tag]]
        assert [v for _, v in got_curves[tag]] == pytest.approx(
            [v for _, v in want_curves[tag]], rel=1e-6
        )


def test_float32_pack_process_tracks_each_lone_run(
    tmp_path: Path, trainer: Callable, scalars: Callable[[Path], Scalars]
) -> None:
    members = [
        {"trial": i, "params": member_params(*m), "logDir": str(tmp_path / f"m{i}")}
        for i, m in enumerate(MEMBERS)
    ]
    done = trainer(shared_flags(32, tmp_path / "unused"), env={"NASOP_PACK": json.dumps(members)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])["pack"]
    for i, m in enumerate(MEMBERS):
        lone_dir = tmp_path / f"lone{i}"
        lone_trace(member_params(*m), 32, lone_dir)
        got, want = scalars(tmp_path / f"m{i}"), scalars(lone_dir)
        assert [s for s, _ in got["val_acc"]] == [s for s, _ in want["val_acc"]]
        for (_, got_acc), (_, want_acc) in zip(got["val_acc"], want["val_acc"], strict=True):
            assert abs(got_acc - want_acc) <= 0.005
        assert got["num_params"] == want["num_params"]
        assert result[str(i)]["num_params"] == want["num_params"][0][1]
        assert result[str(i)]["state"] == "completed"


def test_a_stop_marker_stops_one_member_at_the_epoch_boundary(tmp_path: Path) -> None:
    config = cli.parse(shared_flags(32, tmp_path / "unused"), environ={})
    members = members_in(tmp_path)
    stopped = members[0]  # 3 epochs; asked to stop while its first epoch trains
    member_files.request_stop(str(stopped.log_dir), "early stopping: below the median")
    seen: list[list[str]] = []
    results = pack.run(config, members, observe=lambda r: seen.append(list(r.trials)))
    assert results["0"] == {"state": "stopped", "reason": "early stopping: below the median"}
    assert member_files.read_end(str(stopped.log_dir))["state"] == "stopped"
    assert seen[0] == ["0", "1", "2", "3"] and "0" not in seen[1]
    assert results["3"]["state"] == "completed" and "3" in seen[2]  # the others train on


def test_a_member_with_bad_parameters_fails_alone(tmp_path: Path) -> None:
    config = cli.parse(shared_flags(32, tmp_path / "unused"), environ={})
    good = pack.Member("1", member_params(8, 8, 1e-3, 1), tmp_path / "good")
    bad = pack.Member("2", {**member_params(8, 8, 1e-3, 1), "dropout": 1.5}, tmp_path / "bad")
    results = pack.run(config, [good, bad])
    assert results["1"]["state"] == "completed"
    assert member_files.read_end(str(tmp_path / "bad")) == {
        "state": "failed",
        "reason": "invalid --dropout=1.5: must be in [0, 1)",
    }


def test_members_with_other_batch_sizes_train_as_their_own_group(tmp_path: Path) -> None:
    config = cli.parse(shared_flags(32, tmp_path / "unused"), environ={})
    members = [
        pack.Member(str(i), {**member_params(8, 8, 1e-3, 1), "batch_size": b}, tmp_path / f"m{i}")
        for i, b in enumerate((64, 32, 64))
    ]
    groups: list[list[str]] = []
    pack.run(config, members, observe=lambda r: groups.append(list(r.trials)))
    assert groups == [["1"], ["0", "2"]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"trial": 1}]', "not a member"),
        ('[{"trial": 1, "logDir": "a"}, {"trial": 1, "logDir": "b"}]', "same trial twice"),
    ],
)
def test_bad_pack_lists_are_usage_errors(raw: str, message: str) -> None:
    from nasop_trainer import errors

    with pytest.raises(errors.UsageError, match=message):
        pack.parse_members(raw)


def test_adam_matches_torch_adam_per_member() -> None:
    """Two members with different rates: each slot follows torch.optim.Adam on its own copy."""
    torch.manual_seed(0)
    from nasop_trainer import network

    lones = [network.build_network(5, 4, 3, 0.0).double() for _ in range(2)]
    stack = packed.Stack(lones, [packed.Shape(4, 3, 0.0)] * 2)
    adam = packed.Adam(stack, [1e-2, 1e-3])
    references = [torch.optim.Adam(n.parameters(), lr=lr) for n, lr in zip(lones, [1e-2, 1e-3])]
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 10, (6,))
    for _ in range(3):
        losses = -stack.forward(x).gather(2, y.view(1, -1, 1).expand(2, -1, 1)).squeeze(2).mean(1)
        adam.zero_grad()
        losses.sum().backward()
        adam.step()
        for lone, optimizer in zip(lones, references):
            optimizer.zero_grad()
            torch.nn.functional.nll_loss(lone(x), y).backward()
            optimizer.step()
    for slot, lone in enumerate(lones):
        for got, want in zip(stack.network(slot).parameters(), lone.parameters(), strict=True):
            assert relative_error(got.detach(), want.detach()) < 1e-12
