"""Past a threshold the GP is fitted on a bounded subset of trials: the Pareto layers, the most
recent, a seeded sample (nasop.generators.fit_subset), kept in saved state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ax.core.data_utils import DataLoaderConfig, extract_experiment_data

from nasop import spec
from nasop.engine import experiment, strategy
from nasop.generators import fit_subset, stopped_trials
from nasop.generators.surrogate import StepPlan
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial


def _brute_non_dominated(y):
    return np.array([not any(np.all(o >= r) and np.any(o > r) for o in y) for r in y])


@pytest.mark.parametrize("n, m", [(1, 2), (50, 2), (300, 3), (40, 1)])
def test_non_dominated_matches_brute_force(n, m):
    y = np.random.default_rng(n).integers(0, 6, size=(n, m)).astype(float)  # many ties
    assert (fit_subset.non_dominated(y) == _brute_non_dominated(y)).all()


def test_choose_keeps_the_whole_front_recent_trials_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(400, 2))
    trials = list(range(0, 800, 2))  # trial indices need not be contiguous
    front = {trials[i] for i in np.flatnonzero(_brute_non_dominated(y))}
    kept = fit_subset.choose(trials, y, size=40, seed=3)
    assert len(kept) == 40 and kept == sorted(set(kept))
    assert front <= set(kept)
    assert set(trials[-10:]) <= set(kept)  # the most recent quarter
    assert kept == fit_subset.choose(trials, y.copy(), size=40, seed=3)
    assert kept != fit_subset.choose(trials, y, size=40, seed=4)  # the sample follows the seed


def test_choose_keeps_a_front_larger_than_the_size_whole():
    y = np.stack([np.arange(30.0), -np.arange(30.0)], axis=1)  # every point on the front
    trials = list(range(30))
    assert fit_subset.choose(trials, y, size=10, seed=0) == trials


def test_choose_without_objectives_or_with_few_trials():
    assert fit_subset.choose([1, 2, 3], None, size=5, seed=0) == [1, 2, 3]
    kept = fit_subset.choose(list(range(100)), None, size=20, seed=0)
    assert len(kept) == 20 and set(range(95, 100)) <= set(kept)  # size // 4 recent
    y = np.full((100, 2), np.nan)  # no objective observed: recent and sample only
    assert len(fit_subset.choose(list(range(100)), y, size=20, seed=0)) == 20


def _spec():
    return spec.parse_manifest(manifest(optimizer={"initialTrials": 4, "seed": 0})).spec


def _experiment(s, n):
    """n completed trials on a grid of widths and learning rates; val_acc grows with width,
    num_params is exact: the front is the best accuracy per width."""
    exp = experiment.experiment_from_spec(s, "x", None)
    rng = np.random.default_rng(0)
    for h1, lr in itertools.islice(
        itertools.product([16, 24, 32, 48, 64, 96, 128], [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]), n
    ):
        acc = 0.9 + 0.0005 * h1 - 0.01 * abs(np.log10(lr) + 3) + rng.normal(0, 1e-3)
        params = {
            "hidden_size_1": h1,
            "hidden_size_2": 16,
            "learning_rate": lr,
            "dropout": 0.1,
            "batch_size": 64,
            "epochs": 2,
        }
        metrics = {"val_acc": [float(acc)], "num_params": [float(784 * h1 + h1 * 16 + 170)]}
        add_trial(exp, SyntheticTrial(params, metrics))
    return exp


def _kwargs(gs):
    return gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs


def test_strategy_fits_on_a_subset_past_the_threshold_only():
    s = _spec()
    gs = strategy.strategy_from_spec(s)
    kwargs = _kwargs(gs)
    assert kwargs["transforms"][0] is fit_subset.FitSubset
    assert kwargs["transform_configs"][fit_subset.CONFIG_KEY] == {
        "threshold": strategy.FIT_SUBSET_THRESHOLD,
        "size": strategy.FIT_SUBSET_SIZE,
        "seed": 0,
        "refit_every": strategy.FIT_SUBSET_REFIT_EVERY,
        **strategy.FIT_SUBSET_OPTIMIZER,
    }
    assert strategy.FIT_SUBSET_REFIT_EVERY > 1 and strategy.FIT_SUBSET_OPTIMIZER
    assert strategy.FIT_SUBSET_THRESHOLD >= 100  # 48-trial searches are modelled whole
    assert kwargs["transform_configs"]["Derelativize"]  # Ax's own configs kept
    strategy.fit_subset(gs, None)
    assert fit_subset.FitSubset not in _kwargs(gs)["transforms"]
    assert fit_subset.CONFIG_KEY not in _kwargs(gs)["transform_configs"]
    rule = {"metric": "val_acc", "percentile": 50, "epochsParameter": "epochs"}
    space = [p for p in manifest()["spec"]["searchSpace"] if p["name"] != "epochs"]
    epochs = {"name": "epochs", "type": "int", "bounds": [1, 4]}
    stopping = manifest(searchSpace=[*space, epochs], earlyStopping=rule)
    kwargs = _kwargs(strategy.strategy_from_spec(spec.parse_manifest(stopping).spec))
    assert kwargs["transforms"][:2] == [stopped_trials.StoppedAsShorter, fit_subset.FitSubset]
    # a small discrete space may be enumerated (which avoids only the model's points): whole GP
    small = [
        {"name": "hidden_size_1", "type": "choice", "values": [16, 32, 64]},
        {"name": "epochs", "type": "int", "bounds": [1, 4]},
    ]
    enumerable = spec.parse_manifest(manifest(searchSpace=small)).spec
    assert strategy.may_enumerate(enumerable) and not strategy.may_enumerate(s)
    kwargs = _kwargs(strategy.strategy_from_spec(enumerable))
    assert fit_subset.FitSubset not in kwargs["transforms"]
    sobol = spec.parse_manifest(manifest(optimizer={"method": "sobol"})).spec
    assert "MBM" not in strategy.strategy_from_spec(sobol).nodes_by_name


def _transform(gs, exp, config):
    data = extract_experiment_data(experiment=exp, data_loader_config=DataLoaderConfig())
    t = fit_subset.FitSubset(
        search_space=exp.search_space, experiment_data=data, adapter=gs.adapter, config=config
    )
    return data, t.transform_experiment_data(data.__class__(data.arm_data, data.observation_data))


def test_transform_keeps_the_pareto_trials_and_is_identity_below_the_threshold():
    s = _spec()
    exp = _experiment(s, 30)
    gs = strategy.strategy_from_spec(s)
    gs.gen(experiment=exp, n=1, num_trials=1)  # fits the model: gs.adapter knows the objectives
    data, same = _transform(gs, exp, {"threshold": 30, "size": 8})
    assert same.observation_data.equals(data.observation_data)
    _, cut = _transform(gs, exp, {"threshold": 20, "size": 8, "seed": 1})
    kept = set(cut.observation_data.index.get_level_values("trial_index"))
    assert len(kept) == 8
    means = data.observation_data["mean"]
    y = np.stack([means["val_acc"], -means["num_params"]], axis=1)
    front = set(means.index.get_level_values("trial_index")[_brute_non_dominated(y)])
    assert front and front <= kept
    # the arm data of dropped trials goes too
    assert set(cut.arm_data.index.get_level_values("trial_index")) == kept
    _, again = _transform(gs, exp, {"threshold": 20, "size": 8, "seed": 1})
    assert again.observation_data.equals(cut.observation_data)


def test_subset_survives_saved_state_and_the_reloaded_strategy_fits_on_it():
    s = _spec()
    exp = _experiment(s, 24)
    gs = strategy.strategy_from_spec(s)
    options = {"threshold": 12, "size": 10, "seed": 0, "refit_every": 3, "raw_samples": 64}
    strategy.fit_subset(gs, options)
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), gs)
    back = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle()).strategy
    kwargs = _kwargs(back)
    assert kwargs["transforms"][0] is fit_subset.FitSubset
    assert kwargs["transform_configs"][fit_subset.CONFIG_KEY] == options
    (grs,) = back.gen(experiment=exp, n=1, num_trials=1)
    assert grs[0]._generation_node_name == "MBM" and len(grs[0].arms) == 1
    # the GP saw 10 of the 24 trials; the experiment keeps all of them
    (xs,) = {x.shape[0] for x in back.adapter.generator.surrogate.Xs}
    assert xs == 10 and len(exp.trials) == 24
    assert back.adapter.generator.surrogate.plan == StepPlan(24, 3, {"raw_samples": 64})


def test_step_plan_refits_when_the_trial_count_crosses_a_multiple():
    assert StepPlan(20, 3).refit_due(None)  # no fit yet past the threshold
    assert StepPlan(21, 3).refit_due(20) and StepPlan(24, 3).refit_due(22)
    assert not StepPlan(22, 3).refit_due(21) and not StepPlan(23, 3).refit_due(21)
    assert StepPlan(26, 3).refit_due(23)  # a batch of trials jumped past 24
    assert all(StepPlan(t, 1).refit_due(t) for t in (21, 22))  # 1: always, as before
    assert StepPlan(21, 0).refit_due(21)


def _add(exp, i):
    """One more completed trial, off the grid of `_experiment`."""
    params = {
        "hidden_size_1": 100 + i,
        "hidden_size_2": 16,
        "learning_rate": 1e-3,
        "dropout": 0.1,
        "batch_size": 64,
        "epochs": 2,
    }
    acc = 0.9 + 0.0005 * (100 + i)
    add_trial(exp, SyntheticTrial(params, {"val_acc": [acc], "num_params": [784.0 * (100 + i)]}))


@pytest.mark.parametrize(
    "threshold, fitted",
    [
        # past the threshold from 20 trials: refit at 20 (the first) and 22 (a multiple of 2)
        (12, [True, False, True]),
        (30, [True] * 2),  # at or below the threshold: every step, the strategy's budget
    ],
)
def test_past_the_threshold_hyperparameters_are_kept_between_refits(monkeypatch, threshold, fitted):
    from ax.generators.torch.botorch_modular import acquisition
    from ax.generators.torch.botorch_modular import surrogate as ax_surrogate

    from nasop.generators import surrogate

    s = _spec()
    exp = _experiment(s, 20)
    gs = strategy.strategy_from_spec(s)
    strategy.apply_generation_options(
        gs, {"optimizer_kwargs": {"raw_samples": 16, "num_restarts": 1}}
    )
    options = {"threshold": threshold, "size": 10, "seed": 0, "refit_every": 2, "raw_samples": 32}
    strategy.fit_subset(gs, options)
    fits: list[int] = []  # Ax's path fits a first model, nasop's the warm-started ones
    for module in (ax_surrogate, surrogate):
        monkeypatch.setattr(
            module,
            "fit_botorch_model",
            lambda model, _fit=module.fit_botorch_model, **kw: fits.append(1) or _fit(model, **kw),
        )
    seen: list[dict] = []
    optimize = acquisition.Acquisition.optimize

    def record(self, *args, **kwargs):
        seen.append(dict(kwargs.get("optimizer_options") or {}))
        return optimize(self, *args, **kwargs)

    monkeypatch.setattr(acquisition.Acquisition, "optimize", record)
    steps, previous = [], None
    for i in range(len(fitted)):
        fits.clear()
        (grs,) = gs.gen(experiment=exp, n=1, num_trials=1)
        assert grs[0]._generation_node_name == "MBM" and len(grs[0].arms) == 1
        model = gs.adapter.generator.surrogate.model
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        if previous is not None and not fits:  # kept: the last fit's values, on the new data
            assert all(torch.equal(params[k], v) for k, v in previous[0].items())
            assert not torch.equal(model.train_inputs[0], previous[1])
        steps.append(bool(fits))
        previous = params, model.train_inputs[0].clone()
        _add(exp, i)
    assert steps == fitted
    past = threshold < 20
    assert [o["raw_samples"] for o in seen] == [32 if past else 16] * len(fitted)
    assert (gs.adapter.generator.surrogate.plan is not None) == past
