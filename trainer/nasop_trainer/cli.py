"""Command line and environment -> a validated ``Config``, before torch or Lightning load.

The trial contract passes parameters twice: as ``--<name>=<value>`` flags and as the JSON object
in ``NASOP_PARAMS``; flags win. A parameter this model does not have, or a value it cannot train
with, is a ``UsageError`` (exit 2) so that a bad search space fails fast with a one-line reason
instead of training something else than was asked. Nothing here imports torch, so these errors
come back in well under a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nasop_trainer import errors


@dataclasses.dataclass(frozen=True)
class Params:
    """The searchable parameters of the tutorial's MLP (names as in the Ax tutorial)."""

    hidden_size_1: int = 64
    hidden_size_2: int = 64
    learning_rate: float = 1e-3
    dropout: float = 0.2
    batch_size: int = 64
    epochs: int = 2


PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))
_INT_PARAMETERS = frozenset({"hidden_size_1", "hidden_size_2", "batch_size", "epochs"})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one training run needs; built only by ``parse``."""

    params: Params
    dataset: str = "mnist"
    data_dir: Path = Path("data")
    download: bool = False
    subset: int | None = None
    log_dir: Path = Path("runs/nasop-trainer")
    seed: int = 0
    threads: int = 1
    accelerator: str = "auto"
    checkpoint: bool = False
    latency_runs: int = 50
    precision: int = 32
    experiment: str | None = None
    trial_index: str | None = None


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise errors.UsageError(message, hint="see --help")


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="nasop-trainer",
        description="Train the Ax NAS tutorial MLP and log val_acc, num_params and latency_ms "
        "to TensorBoard (the nasop trial contract).",
        allow_abbrev=False,  # never read --hidden=.. as --hidden_size_1
    )
    group = parser.add_argument_group("parameters (also from NASOP_PARAMS; flags win)")
    for name in PARAMETER_NAMES:
        default = getattr(Params(), name)
        group.add_argument(
            f"--{name}", metavar="N" if name in _INT_PARAMETERS else "X", help=f"default {default}"
        )
    _data_args(parser)
    _run_args(parser)
    return parser


def _data_args(parser: argparse.ArgumentParser) -> None:
    """Where the data comes from and how much of it."""
    parser.add_argument(
        "--dataset",
        choices=("mnist", "digits"),
        default="mnist",
        help="mnist (28x28, from --data-dir) or digits (scikit-learn's bundled 8x8)",
    )
    parser.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        default=None,
        help="folder with mnist.npz or MNIST/raw/*-ubyte[.gz], or the .npz itself "
        "(default: $NASOP_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download MNIST with torchvision if it is missing"
    )
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training samples",
    )


def _run_args(parser: argparse.ArgumentParser) -> None:
    """Where the run logs, and how it runs."""
    parser.add_argument(
        "--log-dir",
        "--log_dir",
        "--log_path",
        dest="log_dir",
        default=None,
        help="TensorBoard folder (default: $NASOP_LOG_DIR, else a new runs/ folder)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, dropout, shuffling")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument(
        "--checkpoint", action="store_true", help="save Lightning checkpoints under the log dir"
    )
    parser.add_argument(
        "--latency-runs",
        "--latency_runs",
        dest="latency_runs",
        type=int,
        default=50,
        help="timed batch-1 forward passes for latency_ms",
    )
    parser.add_argument(
        "--precision",
        type=int,
        choices=(32, 64),
        default=32,
        help="float bits of weights and data (64: exactness checks)",
    )


def _coerce(name: str, value: Any) -> int | float:
    """Reads one parameter value from a flag string or a JSON value, as the right type."""
    shown = f"--{name}={value}"
    if isinstance(value, bool):
        raise errors.UsageError(f"invalid {shown}: expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.UsageError(f"invalid {shown}: expected a number") from None
    if not math.isfinite(number):
        raise errors.UsageError(f"invalid {shown}: must be finite")
    if name in _INT_PARAMETERS:
        if not number.is_integer():  # Ax may send 64.0 for an int; 64.5 is a mistake
            raise errors.UsageError(f"invalid {shown}: expected an integer")
        return int(number)
    return number


def validate(params: Params) -> Params:
    """Rejects values the model cannot train with; returns ``params`` unchanged when valid."""
    for name in ("hidden_size_1", "hidden_size_2", "batch_size", "epochs"):
        if getattr(params, name) < 1:
            raise errors.UsageError(f"invalid --{name}={getattr(params, name)}: must be >= 1")
    if params.learning_rate <= 0:
        raise errors.UsageError(f"invalid --learning_rate={params.learning_rate}: must be > 0")
    if not 0 <= params.dropout < 1:
        raise errors.UsageError(f"invalid --dropout={params.dropout}: must be in [0, 1)")
    return params


def _check_names(values: Mapping[str, Any], source: str) -> None:
    unknown = sorted(set(values) - set(PARAMETER_NAMES))
    if unknown:
        raise errors.UsageError(
            f"{source} has unknown parameter {unknown[0]!r}",
            hint=f"this model takes {', '.join(PARAMETER_NAMES)}",
        )


def _env_params(environ: Mapping[str, str]) -> dict[str, Any]:
    raw = environ.get("NASOP_PARAMS", "").strip()
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.UsageError(f"NASOP_PARAMS is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise errors.UsageError("NASOP_PARAMS must be a JSON object of parameter values")
    _check_names(loaded, "NASOP_PARAMS")
    return loaded


def params_from(values: Mapping[str, Any], source: str = "params") -> Params:
    """Typed, validated ``Params`` from a JSON object (a pack member's ``params``).

    Raises:
        errors.UsageError: an unknown name or a value out of range; ``source`` names where.
    """
    _check_names(values, source)
    # _coerce gives each field its own type, which mypy cannot see through the dict
    return validate(Params(**{k: _coerce(k, v) for k, v in values.items()}))  # type: ignore[arg-type]


def _reject_extras(extras: Sequence[str]) -> None:
    """Unknown flags name a parameter this model does not have: say which, and what it takes."""
    for token in extras:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            raise errors.UsageError(
                f"unknown parameter {flag}: not a parameter of this model",
                hint=f"it takes {', '.join('--' + n for n in PARAMETER_NAMES)}",
            )
        raise errors.UsageError(f"unexpected argument {token!r}", hint="see --help")


def _default_log_dir() -> Path:
    return Path("runs") / f"nasop-trainer-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Builds the run's ``Config`` from flags and the ``NASOP_*`` environment.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
        environ: the environment (default: ``os.environ``).

    Returns:
        A validated ``Config``.

    Raises:
        errors.UsageError: an unknown flag or parameter, or a value out of range.
    """
    environ = os.environ if environ is None else environ
    args, extras = _build_parser().parse_known_args(argv)
    _reject_extras(extras)

    merged: dict[str, int | float] = {}
    for name, value in _env_params(environ).items():
        merged[name] = _coerce(name, value)
    for name in PARAMETER_NAMES:
        if getattr(args, name) is not None:
            merged[name] = _coerce(name, getattr(args, name))
    params = validate(Params(**merged))  # type: ignore[arg-type]  # coerced per field

    for flag, value in (("--threads", args.threads), ("--latency-runs", args.latency_runs)):
        if value < 1:
            raise errors.UsageError(f"invalid {flag}={value}: must be >= 1")
    if args.subset is not None and args.subset < 1:
        raise errors.UsageError(f"invalid --subset={args.subset}: must be >= 1")

    log_dir = args.log_dir or environ.get("NASOP_LOG_DIR") or _default_log_dir()
    return Config(
        params=params,
        dataset=args.dataset,
        data_dir=Path(args.data_dir or environ.get("NASOP_DATA_DIR") or "data"),
        download=args.download,
        subset=args.subset,
        log_dir=Path(log_dir),
        seed=args.seed,
        threads=args.threads,
        accelerator=args.accelerator,
        checkpoint=args.checkpoint,
        latency_runs=args.latency_runs,
        precision=args.precision,
        experiment=environ.get("NASOP_EXPERIMENT") or None,
        trial_index=environ.get("NASOP_TRIAL_INDEX") or None,
    )


__all__ = ["PARAMETER_NAMES", "Config", "Params", "params_from", "parse", "validate"]
