"""Pareto front and hypervolume checked against BoTorch's own computation on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from nasop import spec
from nasop.engine import pareto


def _obs(rows, names=("val_acc", "num_params")):
    return [
        pareto.Observation(trial=i, parameters={"i": i}, metrics=dict(zip(names, r)))
        for i, r in enumerate(rows)
    ]


OBJ = [
    spec.Objective(metric="val_acc", goal="maximize", threshold=0.5),
    spec.Objective(metric="num_params", goal="minimize", threshold=100.0),
]


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
    objectives = [
        spec.Objective(metric=n, goal=g, threshold=0.2 if g == "maximize" else 0.8)
        for n, g in zip(names, goals)
    ]
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


NO_THRESHOLDS = [
    spec.Objective(metric="val_acc", goal="maximize"),
    spec.Objective(metric="num_params", goal="minimize"),
]


def test_missing_thresholds_are_inferred_with_slack_like_botorch():
    f = pareto.front(NO_THRESHOLDS, [], _obs([(0.9, 80), (0.8, 40), (0.7, 90)]))
    # the front is (0.9, 80), (0.8, 40): nadir (0.8, 80) less 10% of the range (0.1, 40)
    assert f.reference == pytest.approx({"val_acc": 0.79, "num_params": 84.0})
    front_y = torch.tensor([[0.9, -80.0], [0.8, -40.0]], dtype=torch.double)
    ref = infer_reference_point(front_y)
    assert [f.reference["val_acc"], -f.reference["num_params"]] == pytest.approx(ref.tolist())
    # both points, extreme ones included, add volume: their boxes less the overlap
    assert f.hypervolume == pytest.approx(0.11 * 4 + 0.01 * 44 - 0.01 * 4)


def test_a_one_point_front_has_a_hypervolume():
    f = pareto.front(NO_THRESHOLDS, [], _obs([(0.9, 80)]))
    assert f.reference == pytest.approx({"val_acc": 0.81, "num_params": 88.0})
    assert f.hypervolume == pytest.approx(0.09 * 8)


def test_given_thresholds_stay_and_the_others_come_from_points_beating_them():
    objs = [spec.Objective(metric="val_acc", goal="maximize", threshold=0.75), NO_THRESHOLDS[1]]
    # (0.6, 10) misses the val_acc threshold: it does not move the inferred num_params
    f = pareto.front(objs, [], _obs([(0.9, 80), (0.8, 40), (0.6, 10)]))
    assert f.reference == pytest.approx({"val_acc": 0.75, "num_params": 84.0})


def test_a_fixed_reference_is_used_as_given():
    f = pareto.front(
        NO_THRESHOLDS,
        [],
        _obs([(0.9, 80), (0.8, 40)]),
        reference={"val_acc": 0.5, "num_params": 100.0},
    )
    assert f.reference == {"val_acc": 0.5, "num_params": 100.0}
    assert f.hypervolume == pytest.approx(0.4 * 20 + 0.3 * 40)


def test_empty():
    f = pareto.front(OBJ, [], [])
    assert f.points == [] and f.hypervolume == 0.0
