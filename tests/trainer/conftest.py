"""Helpers for the trainer tests: run ``python -m nasop_trainer`` and read its TensorBoard files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

TRAINER_SRC = Path(__file__).resolve().parents[2] / "trainer"
Scalars = dict[str, list[tuple[int, float]]]


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NASOP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAINER_SRC), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Runs the trainer in a fresh interpreter with no inherited ``NASOP_*`` variables."""
    return subprocess.run(
        [sys.executable, "-m", "nasop_trainer", *args],
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_scalars(log_dir: Path) -> Scalars:
    """Every scalar tag in ``log_dir`` as ``[(step, value), ...]``, via TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


@pytest.fixture(scope="session")
def trainer() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``trainer(args, env=None)``: runs ``python -m nasop_trainer`` (see ``run``)."""
    return run


@pytest.fixture(scope="session")
def scalars() -> Callable[[Path], Scalars]:
    """``scalars(log_dir)``: the TensorBoard scalars in ``log_dir`` (see ``read_scalars``)."""
    return read_scalars
