"""Honest results at the edges, through `nasop run` with real trial processes and real
TensorBoard files (tests/edge_trainer.py): a final metric that is NaN or inf fails its trial
with a reason naming it and its step; a search in which no trial completed ends Failed naming
the most common failure; without thresholds the reference point is inferred from the front
and fixed, in the saved state, once the initial trials have ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from nasop import spec
from nasop.controller import status_writer
from nasop.engine import pareto
from nasop.engine.search import Search
from nasop.local.session import LocalPaths, local_runner, local_store
from stubs import HERE, manifest, write_manifest

pytestmark = pytest.mark.slow

NASOP = [sys.executable, "-m", "nasop.cli"]
EDGE_TRAINER = os.path.join(HERE, "edge_trainer.py")


def _edge_manifest(tmp_path, name: str, plan: str, **spec_overrides) -> str:
    data = manifest(name, **{"optimizer": {"method": "sobol", "seed": 4}, **spec_overrides})
    data["spec"]["trial"]["command"] = [sys.executable, EDGE_TRAINER]
    data["spec"]["trial"]["args"] = [f"--plan={plan}"]
    return write_manifest(str(tmp_path / f"{name}.yaml"), data)


def _nasop(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        NASOP + list(args) + ["--state-dir", str(tmp_path / "state")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_and_status(tmp_path, path: str) -> tuple[int, dict]:
    run = _nasop(tmp_path, "run", path, "--quiet", "--preload", "torch.utils.tensorboard")
    status = _nasop(tmp_path, "status", path, "-o", "json")
    assert status.returncode == 0, status.stderr
    return run.returncode, json.loads(status.stdout)


def _load(tmp_path, path: str) -> Search:
    m = spec.load_manifest(path)
    paths = LocalPaths(str(tmp_path / "state"))
    return Search.open(m.spec, m.name, local_runner(m, paths), local_store(paths, None))


def test_nan_and_inf_final_values_fail_their_trials_naming_metric_and_step(tmp_path):
    path = _edge_manifest(
        tmp_path,
        "nonfinite",
        "ok,nan,inf",
        budget={"maxTrials": 3, "parallelism": 3, "maxFailedTrials": 2},
    )
    rc, st = _run_and_status(tmp_path, path)
    assert rc == 0 and st["phase"] == "Succeeded", st
    assert st["trials"]["completed"] == 1 and st["trials"]["failed"] == 2
    search = _load(tmp_path, path)
    try:
        assert search.state.reasons == {
            1: "trial exited 0 but val_acc is NaN at step 2",
            2: "trial exited 0 but val_acc is inf at step 2",
        }
        assert [p.trial for p in search.front().points] == [0]
    finally:
        search.close()


def test_a_search_where_no_trial_completed_ends_failed_naming_the_common_reason(tmp_path):
    path = _edge_manifest(
        tmp_path,
        "nothing",
        "fail,nan,fail",
        budget={"maxTrials": 3, "parallelism": 2, "maxFailedTrials": 5},
    )
    rc, st = _run_and_status(tmp_path, path)
    assert rc == 1
    assert st["phase"] == "Failed"
    assert st["message"] == (
        "no trial completed (3 failed); most common reason (2 of 3): edge trainer: out of patience"
    )
    ready = st["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] == "Failed"
    assert st["paretoFront"] == [] and st["trials"]["failed"] == 3
    # the operator writes the same block (search.status().dump()) as a merge patch
    search = _load(tmp_path, path)
    try:
        patch = status_writer.diff({"phase": "Running"}, search.status().dump())
        assert patch["phase"] == "Failed" and patch["message"] == st["message"]
    finally:
        search.close()


def _inferred(rows: list[tuple[float, float]]) -> dict[str, float]:
    """BoTorch's reference point for these (val_acc, num_params) rows, in metric units."""
    y = torch.tensor([(a, -n) for a, n in rows], dtype=torch.double)
    ref = infer_reference_point(y[is_non_dominated(y)])
    return {"val_acc": float(ref[0]), "num_params": -float(ref[1])}


def test_without_thresholds_the_reference_is_inferred_then_fixed_after_initial_trials(tmp_path):
    objectives = [
        {"metric": "val_acc", "goal": "maximize"},
        {"metric": "num_params", "goal": "minimize"},
    ]
    path = _edge_manifest(
        tmp_path,
        "inferred",
        "ok",
        objectives=objectives,
        budget={"maxTrials": 6, "parallelism": 1, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 4, "initialTrials": 2},
    )
    rc, st = _run_and_status(tmp_path, path)
    assert rc == 0 and st["phase"] == "Succeeded", st
    assert st["inferredThresholds"] == ["val_acc", "num_params"]
    cond = next(c for c in st["conditions"] if c["type"] == "ThresholdsInferred")
    assert cond["reason"] == "Fixed" and "10% of the range" in cond["message"]

    search = _load(tmp_path, path)
    try:
        obs = sorted(search.observations(), key=lambda o: o.trial)
        rows = [(o.metrics["val_acc"], o.metrics["num_params"]) for o in obs]
        assert len(rows) == 6
        # fixed when the two initial trials had ended (parallelism 1: trials 0 and 1), and
        # reported by `nasop status`, a new process that only has the saved state
        fixed = _inferred(rows[:2])
        assert st["objectiveThresholds"] == pytest.approx(fixed)
        assert search.state.reference == pytest.approx(fixed)
        assert _inferred(rows) != pytest.approx(fixed)  # the front moved on; the point did not
        assert st["hypervolume"] > 0
        front = pareto.front(search.spec.objectives, [], search.observations(), reference=fixed)
        assert st["hypervolume"] == pytest.approx(front.hypervolume)
        # a front of one or two points already has a hypervolume w.r.t. the inferred point
        for n in (1, 2):
            assert pareto.front(search.spec.objectives, [], obs[:n]).hypervolume > 0
    finally:
        search.close()
