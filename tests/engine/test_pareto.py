"""Pareto front and hypervolume checked against BoTorch's own computation on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated

from nasop import spec
from nasop.engine import pareto


def _obs(rows, names=("val_acc", "num_params")):
    return [pareto.Observation(trial=i, parameters={"i": i}, metrics=dict(zip(names, r)))
            for i, r in enumerate(rows)]


OBJ = [spec.Objective(metric="val_acc", goal="maximize", threshold=0.5),
       spec.Objective(metric="num_params", goal="minimize", threshold=100.0)]


def test_hand_computed_2d_front():
    rows = [(0.9, 80), (0.8, 40), (0.7, 60), (0.6, 10), (0.95, 120)]
    f = pareto.front(OBJ, [], _obs(rows))
    # (0.7, 60) is dominated by (0.8, 40); (0.95, 120) is on the front but beyond the threshold
    assert [p.trial for p in f.points] == [0, 1, 3, 4]
    # union of rectangles above (0.5, -100) in (acc, -params) space:
    expected = 0.4 * 20 + 0.3 * 40 + 0.1 * 30
    assert f.hypervolume == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("m", [2, 3])
def test_matches_botorch_on_random_data(seed, m):
    rng = np.random.default_rng(seed)
    y = rng.random((40, m))
    names = [f"m{j}" for j in range(m)]
    goals = ["maximize", "minimize", "maximize"][:m]
    objectives = [spec.Objective(metric=n, goal=g, threshold=0.2 if g == "maximize" else 0.8)
                  for n, g in zip(names, goals)]
    f = pareto.front(objectives, [], _obs([tuple(r) for r in y], names))
    sign = torch.tensor([1.0 if g == "maximize" else -1.0 for g in goals], dtype=torch.double)
    yt = torch.as_tensor(y, dtype=torch.double) * sign
    mask = is_non_dominated(yt)
    assert sorted(p.trial for p in f.points) == sorted(torch.nonzero(mask).flatten().tolist())
    ref = torch.tensor([0.2 if g == "maximize" else 0.8 for g in goals], dtype=torch.double) * sign
    hv = Hypervolume(ref_point=ref).compute(yt[mask])
    assert f.hypervolume == pytest.approx(float(hv), rel=1e-9)


def test_constraint_excludes_violating_points():
    rows = [(0.9, 80, 9.0), (0.8, 40, 1.0)]
    obs = _obs(rows, ("val_acc", "num_params", "latency_ms"))
    c = [spec.parse_outcome_constraint("latency_ms <= 5")]
    f = pareto.front(OBJ, c, obs)
    assert [p.trial for p in f.points] == [1]


def test_missing_thresholds_use_nadir():
    objs = [spec.Objective(metric="val_acc", goal="maximize"),
            spec.Objective(metric="num_params", goal="minimize")]
    f = pareto.front(objs, [], _obs([(0.9, 80), (0.8, 40)]))
    assert f.reference == {"val_acc": 0.8, "num_params": 80.0}
    assert f.hypervolume == 0.0  # both points lie on the nadir box's edges


def test_empty():
    f = pareto.front(OBJ, [], [])
    assert f.points == [] and f.hypervolume == 0.0
