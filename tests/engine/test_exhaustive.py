"""Acquisition optimisation by enumeration on small discrete spaces (generators/exhaustive.py)."""

from __future__ import annotations

import pytest
import torch
from ax.core.search_space import SearchSpaceDigest

from nasop import spec
from nasop.engine import experiment, strategy
from nasop.generators import exhaustive
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial

OPS = ["a", "b", "c"]


def _digest(names, discrete=None, bounds=None):
    return SearchSpaceDigest(
        feature_names=names,
        bounds=bounds or [(0.0, 1.0)] * len(names),
        ordinal_features=sorted(discrete or {}),
        discrete_choices=discrete or {},
    )


def test_points_are_every_valid_configuration():
    names = ["x_OH_PARAM_0", "x_OH_PARAM_1", "x_OH_PARAM_2", "y", "z_OH_PARAM_0", "z_OH_PARAM_1"]
    points = exhaustive.enumerate_points(_digest(names, {3: [0.0, 0.5, 1.0]}))
    assert points is not None and points.shape == (3 * 3 * 2, 6)
    assert len({tuple(r) for r in points.tolist()}) == 18  # no duplicates
    assert torch.all(points[:, :3].sum(dim=1) == 1) and torch.all(points[:, 4:].sum(dim=1) == 1)
    assert set(points[:, 3].tolist()) == {0.0, 0.5, 1.0}


def test_fixed_features_keep_their_value():
    names = ["x_OH_PARAM_0", "x_OH_PARAM_1", "y"]
    points = exhaustive.enumerate_points(_digest(names, {2: [0.0, 1.0]}), fixed_features={2: 1.0})
    assert points is not None and points.shape == (2, 3) and set(points[:, 2].tolist()) == {1.0}


def test_continuous_or_large_spaces_are_left_to_ax():
    assert exhaustive.enumerate_points(_digest(["x_OH_PARAM_0", "x_OH_PARAM_1", "lr"])) is None
    names = [f"p{i}_OH_PARAM_{j}" for i in range(3) for j in range(5)]  # 125 configurations
    assert exhaustive.enumerate_points(_digest(names), limit=124) is None
    big = exhaustive.enumerate_points(_digest(names), limit=125)
    assert big is not None and big.shape == (125, 15)


def _choice_spec():
    m = manifest(
        searchSpace=[
            {"name": f"op{i}", "type": "choice", "values": OPS, "ordered": False} for i in range(3)
        ],
        objectives=[
            {"metric": "acc", "goal": "maximize", "threshold": 0.0},
            {"metric": "size", "goal": "minimize", "threshold": 10.0},
        ],
        optimizer={"initialTrials": 4, "seed": 0},
        budget={"maxTrials": 27, "parallelism": 2},
    )
    return spec.parse_manifest(m).spec


def _score(params):
    k = [OPS.index(params[f"op{i}"]) for i in range(3)]
    return {"acc": float(sum(k) + 0.3 * k[0]), "size": float(1 + k[1] + 2 * k[2])}


def test_model_node_picks_the_best_unobserved_configuration(monkeypatch):
    """Every proposal is the acquisition's argmax over all 27 configurations not yet observed
    or pending: checked against a brute-force evaluation of the same acquisition function."""
    s = _choice_spec()
    exp = experiment.experiment_from_spec(s, "x", None)
    for cell in [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b"), ("a", "a", "a")]:
        params = {f"op{j}": v for j, v in enumerate(cell)}
        add_trial(exp, SyntheticTrial(params, _score(params)))
    gs = strategy.strategy_from_spec(s)
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), gs)  # survives saved state
    gs = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle()).strategy
    picks = []
    original = exhaustive.ExhaustiveAcquisition._best_of

    def checked(self, n, points):
        candidates, values, weights = original(self, n, points)
        seen = torch.cat([x for x in (self.X_observed, self.X_pending) if x is not None])
        fresh = points[~(points.unsqueeze(1) == seen.unsqueeze(0)).all(-1).any(-1)]
        with torch.no_grad():
            every = self.acqf(fresh.unsqueeze(1))
        assert points.shape[0] == 27 and n == 1
        assert values.reshape(-1)[0].item() == pytest.approx(every.max().item(), rel=1e-6, abs=1e-9)
        picks.append(candidates)
        return candidates, values, weights

    monkeypatch.setattr(exhaustive.ExhaustiveAcquisition, "_best_of", checked)
    observed = [tuple(t.arms[0].parameters.values()) for t in exp.trials.values()]
    proposed = []
    for _ in range(3):  # each proposal runs (pending) while the next is generated
        ((gr,),) = gs.gen(experiment=exp, n=1, num_trials=1)
        exp.new_trial(generator_run=gr).mark_running(no_runner_required=True)
        proposed.append(tuple(gr.arms[0].parameters.values()))
    assert len(picks) == 3
    assert len(set(proposed)) == 3 and not set(proposed) & set(observed)


def test_tutorial_space_keeps_axs_optimiser(monkeypatch):
    """Float parameters: no enumeration, Ax's own optimiser runs."""
    called = []

    def never(*args):
        called.append(args)
        raise AssertionError("enumerated a space with float parameters")

    monkeypatch.setattr(exhaustive.ExhaustiveAcquisition, "_best_of", never)
    s = spec.parse_manifest(manifest(optimizer={"initialTrials": 4, "seed": 0})).spec
    exp = experiment.experiment_from_spec(s, "x", None)
    for h1, acc in zip([16, 32, 64, 128], [0.8, 0.9, 0.93, 0.95]):
        params = {"hidden_size_1": h1, "hidden_size_2": 16, "learning_rate": 1e-3}
        params |= {"dropout": 0.1, "batch_size": 64, "epochs": 2}
        add_trial(exp, SyntheticTrial(params, {"val_acc": acc, "num_params": 784.0 * h1}))
    gs = strategy.strategy_from_spec(s)
    (grs,) = gs.gen(experiment=exp, n=1, num_trials=1)
    assert grs[0].arms and not called
    kwargs = gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert kwargs["acquisition_class"] is exhaustive.ExhaustiveAcquisition
