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


def _four_observed():
    """The 27-configuration choice space with four configurations observed."""
    s = _choice_spec()
    exp = experiment.experiment_from_spec(s, "x", None)
    for cell in [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b"), ("a", "a", "a")]:
        params = {f"op{j}": v for j, v in enumerate(cell)}
        add_trial(exp, SyntheticTrial(params, _score(params)))
    return s, exp


def test_model_node_picks_the_best_unobserved_configuration(monkeypatch):
    """Every proposal is the acquisition's argmax over all 27 configurations not yet observed
    or pending: checked against a brute-force evaluation of the same acquisition function."""
    s, exp = _four_observed()
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


def _two_objective_acqf(seed=0):
    """qLogNEHVI on two GPs over 3 one-hot choices of 5 values (125 points), 12 observed."""
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.models import ModelListGP, SingleTaskGP

    names = [f"p{i}_OH_PARAM_{j}" for i in range(3) for j in range(5)]
    points = exhaustive.enumerate_points(_digest(names))
    assert points is not None
    g = torch.Generator().manual_seed(seed)
    X = points[torch.randperm(points.shape[0], generator=g)[:12]]
    w = torch.linspace(-1.0, 1.0, 15, dtype=torch.double)
    acc = (X * w).sum(-1, keepdim=True) + 0.1 * torch.randn(12, 1, generator=g, dtype=X.dtype)
    size = (X * w.flip(0)).sum(-1, keepdim=True)
    model = ModelListGP(SingleTaskGP(X, acc), SingleTaskGP(X, -size))
    ref = torch.tensor([-3.0, -3.0], dtype=torch.double)
    acqf = qLogNoisyExpectedHypervolumeImprovement(model=model, ref_point=ref, X_baseline=X)
    return acqf, points, X


def test_expected_improvement_is_botorchs_analytic_ehvi():
    """Checked against BoTorch's analytic ExpectedHypervolumeImprovement on the same GPs, whose
    outputs are the objectives (maximised), against the front of the means at the baseline."""
    from botorch.acquisition.multi_objective.analytic import ExpectedHypervolumeImprovement
    from botorch.utils.multi_objective.box_decompositions.non_dominated import (
        FastNondominatedPartitioning,
    )
    from botorch.utils.multi_objective.pareto import is_non_dominated

    acqf, points, X = _two_objective_acqf()
    score = exhaustive.expected_improvement(acqf, points)
    assert score is not None and score.shape == (125,)
    with torch.no_grad():
        front = acqf.model.posterior(X).mean
    front = front[is_non_dominated(front)]
    partitioning = FastNondominatedPartitioning(ref_point=acqf.ref_point, Y=front)
    ehvi = ExpectedHypervolumeImprovement(acqf.model, acqf.ref_point.tolist(), partitioning)
    with torch.no_grad():
        expected = ehvi(points.unsqueeze(-2))
    assert torch.allclose(score, expected, rtol=1e-6, atol=1e-9)
    assert (score >= 0).all() and score.max() > 10 * score.min()


def test_screen_keeps_the_acquisitions_argmax(monkeypatch):
    """The best points by the bound, a random sample of the rest, the acquisition's argmax
    among them; small spaces and single-objective acquisitions are left whole."""
    monkeypatch.setattr(exhaustive, "SCREEN_TOP", 20)
    monkeypatch.setattr(exhaustive, "SCREEN_RANDOM", 5)
    for seed in range(3):
        acqf, points, X = _two_objective_acqf(seed)
        unseen = exhaustive._unseen(points, X)
        assert unseen.shape[0] == 125 - 12
        state = torch.get_rng_state()
        kept = exhaustive.screen(acqf, unseen)
        assert torch.equal(torch.get_rng_state(), state)  # the global generator untouched
        assert torch.equal(exhaustive.screen(acqf, unseen), kept)  # reproducible
        assert kept.shape == (25, 15) and len({tuple(r) for r in kept.tolist()}) == 25
        assert exhaustive._unseen(kept, unseen).shape[0] == 0  # a subset of the points
        with torch.no_grad():
            best = unseen[acqf(unseen.unsqueeze(-2)).argmax()]
        assert (kept == best).all(-1).any()
    assert exhaustive.screen(acqf, unseen[:25]).shape[0] == 25

    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    single = qLogNoisyExpectedImprovement(acqf.model.models[0], X_baseline=X)
    assert exhaustive.expected_improvement(single, unseen) is None
    assert exhaustive.screen(single, unseen).shape[0] == unseen.shape[0]


@pytest.mark.parametrize("screened", [True, False])
def test_model_node_evaluates_the_screened_points(monkeypatch, screened):
    """Past the screen's size the acquisition sees SCREEN_TOP + SCREEN_RANDOM unseen points;
    with the acquisition option `screen: False` every one."""
    from botorch.optim import optimize as botorch_optimize

    monkeypatch.setattr(exhaustive, "SCREEN_TOP", 4)
    monkeypatch.setattr(exhaustive, "SCREEN_RANDOM", 2)
    sizes = []
    original = botorch_optimize.optimize_acqf_discrete

    def counted(**kwargs):
        sizes.append(kwargs["choices"].shape[0])
        return original(**kwargs)

    monkeypatch.setattr(exhaustive, "optimize_acqf_discrete", counted)
    s, exp = _four_observed()
    gs = strategy.strategy_from_spec(s)
    if not screened:
        for g in gs.nodes_by_name[strategy.MODEL_NODE].generator_specs:
            g.generator_kwargs["acquisition_options"] = {"screen": False}
    ((gr,),) = gs.gen(experiment=exp, n=1, num_trials=1)
    observed = {tuple(t.arms[0].parameters.values()) for t in exp.trials.values()}
    assert tuple(gr.arms[0].parameters.values()) not in observed
    assert sizes == ([6] if screened else [27])
