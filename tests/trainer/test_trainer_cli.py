"""Flags and NASOP_* environment -> Config: the trial contract's input side (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasop_trainer import __main__ as entry
from nasop_trainer import cli, errors


def test_flags_set_typed_parameters() -> None:
    config = cli.parse(
        [
            "--hidden_size_1=32",
            "--hidden_size_2",
            "16",
            "--learning_rate=3e-3",
            "--dropout=0.25",
            "--batch_size=128",
            "--epochs=3",
        ],
        environ={},
    )
    assert config.params == cli.Params(32, 16, 3e-3, 0.25, 128, 3)
    assert isinstance(config.params.hidden_size_1, int)
    assert isinstance(config.params.learning_rate, float)


def test_defaults_when_nothing_is_given() -> None:
    config = cli.parse([], environ={})
    assert config.params == cli.Params()
    assert config.threads == 1 and config.accelerator == "auto" and config.seed == 0
    assert config.dataset == "mnist" and config.data_dir == Path("data")
    assert config.log_dir.parent == Path("runs")


def test_nasop_params_are_read_and_flags_win() -> None:
    env = {
        "NASOP_PARAMS": json.dumps(
            {"hidden_size_1": 20, "hidden_size_2": 10.0, "learning_rate": 0.01, "batch_size": 32}
        )
    }
    config = cli.parse(["--hidden_size_2=12"], environ=env)
    assert config.params.hidden_size_1 == 20
    assert config.params.hidden_size_2 == 12
    assert config.params.learning_rate == 0.01
    assert config.params.batch_size == 32
    assert config.params.epochs == cli.Params().epochs


def test_environment_gives_log_dir_data_dir_and_trial_identity() -> None:
    env = {
        "NASOP_LOG_DIR": "/logs/exp/3",
        "NASOP_DATA_DIR": "/data",
        "NASOP_EXPERIMENT": "exp",
        "NASOP_TRIAL_INDEX": "3",
    }
    config = cli.parse([], environ=env)
    assert config.log_dir == Path("/logs/exp/3") and config.data_dir == Path("/data")
    assert (config.experiment, config.trial_index) == ("exp", "3")
    assert cli.parse(["--log-dir=/x", "--data-dir=/y"], environ=env).log_dir == Path("/x")
    assert cli.parse(["--log_path=/t"], environ={}).log_dir == Path("/t")  # the tutorial's flag


def test_integral_floats_are_accepted_for_int_parameters() -> None:
    assert cli.parse(["--batch_size=64.0"], environ={}).params.batch_size == 64


@pytest.mark.parametrize("argv", [["--width=3"], ["--hidden=3"], ["--width", "3"]])
def test_unknown_flag_is_a_usage_error_naming_it(argv: list[str]) -> None:
    with pytest.raises(errors.UsageError, match=f"unknown parameter {argv[0].split('=')[0]}"):
        cli.parse(argv, environ={})


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--learning_rate=0", "--learning_rate=0.0: must be > 0"),
        ("--learning_rate=-0.1", "--learning_rate=-0.1: must be > 0"),
        ("--learning_rate=nan", "--learning_rate=nan: must be finite"),
        ("--dropout=1", "--dropout=1.0: must be in [0, 1)"),
        ("--dropout=-0.1", "--dropout=-0.1: must be in [0, 1)"),
        ("--hidden_size_1=0", "--hidden_size_1=0: must be >= 1"),
        ("--hidden_size_2=-4", "--hidden_size_2=-4: must be >= 1"),
        ("--batch_size=0", "--batch_size=0: must be >= 1"),
        ("--epochs=0", "--epochs=0: must be >= 1"),
        ("--epochs=1.5", "--epochs=1.5: expected an integer"),
        ("--hidden_size_1=abc", "--hidden_size_1=abc: expected a number"),
        ("--threads=0", "--threads=0: must be >= 1"),
        ("--subset=0", "--subset=0: must be >= 1"),
    ],
)
def test_bad_values_are_usage_errors(flag: str, message: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        cli.parse([flag], environ={})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "NASOP_PARAMS is not valid JSON"),
        ("[1, 2]", "NASOP_PARAMS must be a JSON object"),
        ('{"width": 3}', "NASOP_PARAMS has unknown parameter 'width'"),
        ('{"dropout": true}', "--dropout=True: expected a number"),
    ],
)
def test_bad_nasop_params_are_usage_errors(value: str, message: str) -> None:
    with pytest.raises(errors.UsageError, match=message.replace("[", r"\[")):
        cli.parse([], environ={"NASOP_PARAMS": value})


def test_main_reports_usage_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--width=3"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(
        "nasop-trainer: error: unknown parameter --width"
    )
    assert entry.main(["--accelerator=tpu"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
