"""``python -m nasop_trainer`` end to end in a subprocess: the trial contract's output side.

Tiny runs on scikit-learn's bundled digits; each start costs a few seconds of imports.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nasop import results
from nasop.results import Collector

Runner = Callable[..., subprocess.CompletedProcess[str]]
Reader = Callable[[Path], dict[str, list[tuple[int, float]]]]
H1, H2 = 12, 7
ARGS = [
    "--dataset=digits",
    "--subset=300",
    f"--hidden_size_1={H1}",
    f"--hidden_size_2={H2}",
    "--learning_rate=0.01",
    "--dropout=0.1",
    "--batch_size=32",
    "--epochs=3",
    "--seed=5",
    "--latency-runs=10",
]


def expected_params(h1: int, h2: int, input_dim: int = 64) -> int:
    return input_dim * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory, trainer: Runner
) -> tuple[subprocess.CompletedProcess[str], Path]:
    log_dir = tmp_path_factory.mktemp("first")
    return trainer([*ARGS, f"--log-dir={log_dir}"]), log_dir


def _one_stderr_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_run_writes_the_contract_scalars(
    first_run: tuple[subprocess.CompletedProcess[str], Path], scalars: Reader
) -> None:
    proc, log_dir = first_run
    assert proc.returncode == 0, proc.stderr
    found = scalars(log_dir)
    for curve in ("val_acc", "val_loss", "train_loss"):
        assert [step for step, _ in found[curve]] == [0, 1, 2], curve
    assert all(0 <= acc <= 1 for _, acc in found["val_acc"])
    assert found["num_params"] == [(0, expected_params(H1, H2))]
    [(step, latency_ms)] = found["latency_ms"]
    assert step == 0 and latency_ms > 0

    *points, last = proc.stdout.strip().splitlines()  # the contract's lines, then the result
    reported = Collector(found)
    for line in points:
        assert line.startswith(results.PREFIX), line
        reported.feed_line(line)
    assert not reported.rejected and not reported.gaps
    for name, curve in found.items():  # stdout says what TensorBoard holds (float32 there)
        assert reported.curve(name) == [(s, pytest.approx(v, rel=1e-6)) for s, v in curve], name
    result = json.loads(last)
    assert set(result) == {"val_acc", "num_params", "latency_ms"}
    assert result["num_params"] == expected_params(H1, H2)
    assert result["val_acc"] == pytest.approx(found["val_acc"][-1][1], abs=1e-6)
    assert result["latency_ms"] == pytest.approx(latency_ms, rel=1e-5)


@pytest.mark.slow
def test_same_seed_gives_the_same_curves(
    first_run: tuple[subprocess.CompletedProcess[str], Path],
    tmp_path: Path,
    trainer: Runner,
    scalars: Reader,
) -> None:
    proc = trainer([*ARGS, f"--log-dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    for curve in ("val_acc", "val_loss", "train_loss"):
        assert scalars(tmp_path)[curve] == scalars(first_run[1])[curve], curve


@pytest.mark.slow
def test_environment_contract(tmp_path: Path, trainer: Runner, scalars: Reader) -> None:
    log_dir = tmp_path / "logs" / "exp" / "4"
    params = {
        "hidden_size_1": 10,
        "hidden_size_2": 6,
        "learning_rate": 0.005,
        "dropout": 0.0,
        "batch_size": 64,
        "epochs": 2,
    }
    termination = tmp_path / "termination-log"
    env = {
        "NASOP_PARAMS": json.dumps(params),
        "NASOP_LOG_DIR": str(log_dir),
        "NASOP_EXPERIMENT": "quick-digits",
        "NASOP_TRIAL_INDEX": "4",
        "NASOP_TERMINATION_LOG": str(termination),
    }
    proc = trainer(["--dataset=digits", "--subset=200", "--hidden_size_2=9"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "experiment=quick-digits trial=4" in proc.stderr
    found = scalars(log_dir)
    assert found["num_params"] == [(0, expected_params(10, 9))]  # the flag beat NASOP_PARAMS
    assert [step for step, _ in found["val_acc"]] == [0, 1]
    decoded = results.decode_final(termination.read_text())
    assert not isinstance(decoded, str), decoded
    final = decoded[None]["final"]  # the last value of each metric, at its step
    printed = [line for line in proc.stdout.splitlines() if line.startswith("NASOP1 ")]
    assert decoded[None]["lines"] == len(printed)  # so a reader knows of lines lost at the end
    assert final["num_params"] == (0, expected_params(10, 9))
    assert final["val_acc"] == (1, pytest.approx(found["val_acc"][-1][1], rel=1e-6))


def test_unknown_parameter_flag_exits_2_naming_it(tmp_path: Path, trainer: Runner) -> None:
    proc = trainer(["--dataset=digits", "--width=3", f"--log-dir={tmp_path}"])
    assert proc.returncode == 2
    assert "unknown parameter --width" in _one_stderr_line(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--learning_rate=-1", "--learning_rate=-1.0"),
        ("--dropout=1.5", "--dropout=1.5"),
        ("--batch_size=0", "--batch_size=0"),
    ],
)
def test_bad_value_exits_2_naming_it(
    flag: str, message: str, tmp_path: Path, trainer: Runner
) -> None:
    proc = trainer(["--dataset=digits", flag, f"--log-dir={tmp_path}"])
    assert proc.returncode == 2
    assert message in _one_stderr_line(proc)


@pytest.mark.slow
def test_missing_data_exits_3_saying_how_to_get_it(tmp_path: Path, trainer: Runner) -> None:
    proc = trainer(
        ["--dataset=mnist", f"--log-dir={tmp_path / 'logs'}"],
        env={"NASOP_DATA_DIR": str(tmp_path / "empty")},
    )
    assert proc.returncode == 3
    line = _one_stderr_line(proc)
    assert "MNIST not found in" in line and "empty" in line and "--dataset digits" in line
