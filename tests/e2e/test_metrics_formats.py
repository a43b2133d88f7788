"""The three ways a trial reports (spec.trial.metricsFormat), through `nasop run` with real trial
processes (tests/fake_trainer.py): `nasop` lines on stdout with a termination message, Katib's
`name=value` lines, and TensorBoard files only. The same trainer, the same parameters: the same
values reach Ax, and a trial that reports nothing in the chosen format fails saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nasop import spec
from nasop.engine.search import Search
from nasop.local.session import LocalPaths, local_runner, local_store
from stubs import manifest, write_manifest

pytestmark = pytest.mark.slow
NASOP = [sys.executable, "-m", "nasop.cli"]


def _run(tmp_path, name: str, fmt: str, trainer_format: str) -> tuple[int, dict, Search]:
    data = manifest(
        name,
        optimizer={"method": "sobol", "seed": 3},
        budget={"maxTrials": 3, "parallelism": 3, "maxFailedTrials": 3},
    )
    data["spec"]["trial"]["metricsFormat"] = fmt
    data["spec"]["trial"]["args"] = [f"--format={trainer_format}"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_manifest(str(tmp_path / f"{name}.yaml"), data)
    state = ["--state-dir", str(tmp_path / "state")]
    run = subprocess.run(
        [*NASOP, "run", path, "--quiet", *state], capture_output=True, text=True, timeout=600
    )
    status = subprocess.run(
        [*NASOP, "status", path, "-o", "json", *state], capture_output=True, text=True, timeout=300
    )
    assert status.returncode == 0, status.stderr
    m = spec.load_manifest(path)
    paths = LocalPaths(str(tmp_path / "state"))
    search = Search.open(m.spec, m.name, local_runner(m, paths), local_store(paths, None))
    return run.returncode, json.loads(status.stdout), search


def _curves(search: Search) -> dict[tuple[int, str], list[float]]:
    df = search.experiment.lookup_data().full_df
    return {
        (int(t), str(n)): [float(v) for v in g.sort_values("step")["mean"]]
        for (t, n), g in df.groupby(["trial_index", "metric_name"])
    }


def test_each_format_gives_ax_the_same_values(tmp_path):
    seen = {}
    for fmt, trainer_format in [
        ("nasop", "nasop"),
        ("katib", "katib"),
        ("tensorboard", "tensorboard"),
    ]:
        rc, status, search = _run(tmp_path / fmt, f"fmt-{fmt}", fmt, trainer_format)
        try:
            assert rc == 0 and status["phase"] == "Succeeded", status
            assert status["trials"]["completed"] == 3, status["trials"]
            seen[fmt] = _curves(search)
        finally:
            search.close()
        if fmt == "nasop":  # the trial's output is where the contract says
            log_dir = search.experiment.trials[0].run_metadata["tb_log_dir"]
            with open(os.path.join(log_dir, ".nasop", "stdout"), encoding="utf-8") as fh:
                assert fh.read().startswith("NASOP1 ")
            assert os.path.exists(os.path.join(log_dir, ".nasop", "termination-log"))
    assert seen["nasop"].keys() == seen["katib"].keys() == seen["tensorboard"].keys()
    for key, values in seen["nasop"].items():
        assert seen["katib"][key] == pytest.approx(values, rel=1e-9), key
        assert seen["tensorboard"][key] == pytest.approx(values, rel=1e-6), key  # float32 there


def test_a_trial_reporting_in_another_format_fails_saying_what_was_missing(tmp_path):
    _, status, search = _run(tmp_path, "mismatch", "nasop", "tensorboard")
    search.close()
    assert status["phase"] == "Failed", status
    assert "no val_acc reported" in json.dumps(status), status
