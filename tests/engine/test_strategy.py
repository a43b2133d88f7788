"""nasop's generation settings: set on the model-based node, accepted by Ax, kept in saved state."""

from __future__ import annotations

import pytest
from ax.core.base_trial import TrialStatus
from ax.core.observation import ObservationFeatures

from nasop import spec
from nasop.engine import experiment, strategy
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial, experiment_with_trials


def _spec(**kw):
    return spec.parse_manifest(manifest(**kw)).spec


def _options(gs):
    return gs.nodes_by_name["MBM"].generator_specs[0].generator_gen_kwargs.get("model_gen_options")


def test_generation_options_on_model_node_only():
    gs = strategy.strategy_from_spec(_spec())
    assert _options(gs) == strategy.GENERATION_OPTIONS
    assert _options(gs) is not strategy.GENERATION_OPTIONS  # a copy: strategies do not share it
    assert (
        "model_gen_options" not in gs.nodes_by_name["Sobol"].generator_specs[0].generator_gen_kwargs
    )
    sobol = strategy.strategy_from_spec(_spec(optimizer={"method": "sobol"}))
    assert "MBM" not in sobol.nodes_by_name


def test_generation_options_survive_saved_state():
    s = _spec()
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), strategy.strategy_from_spec(s))
    back = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle())
    assert _options(back.strategy) == strategy.GENERATION_OPTIONS


@pytest.mark.parametrize("accuracies", [(0.80, 0.90, 0.93, 0.95), (0.1, 0.2, 0.3, 0.4)])
def test_model_node_generates_with_options(accuracies):
    """Ax accepts the options after 4 completed trials, also while no trial beats the val_acc
    threshold (0.5), when Ax switches to qLogProbabilityOfFeasibility."""
    s = _spec(optimizer={"initialTrials": 4, "seed": 0})
    exp = experiment_with_trials(
        s,
        [
            SyntheticTrial(
                {
                    "hidden_size_1": h1,
                    "hidden_size_2": 16,
                    "learning_rate": 1e-3,
                    "dropout": 0.1,
                    "batch_size": 64,
                    "epochs": 2,
                },
                {"val_acc": [acc], "num_params": [float(784 * h1 + h1 * 16 + 170)]},
            )
            for h1, acc in zip([16, 32, 64, 128], accuracies)
        ],
        name="x",
    )
    gs = strategy.strategy_from_spec(s)
    (grs,) = gs.gen(experiment=exp, n=1, num_trials=1)
    assert grs[0]._generation_node_name == "MBM" and len(grs[0].arms) == 1


def _curve_trial(exp, params, values, status):
    n = 784 * params["hidden_size_1"] + params["hidden_size_1"] * 16 + 170
    return add_trial(
        exp, SyntheticTrial(params, {"num_params": [float(n)], "val_acc": values}, status=status)
    )


@pytest.mark.parametrize("last_values", [True, False])
def test_early_stopped_curves_do_not_lift_short_trials(last_values):
    """With `epochs` searched, Ax's default model takes the curve's step as an input and predicts
    every candidate at the largest step: early-stopped 4-epoch trials (data at step 0 only) then
    teach it that the step lifts accuracy, and a 1-epoch configuration is predicted at 4-epoch
    accuracy. nasop models last values: it predicts what a 1-epoch trial reached."""
    space = [p for p in manifest()["spec"]["searchSpace"] if p["name"] != "epochs"]
    s = _spec(
        searchSpace=[*space, {"name": "epochs", "type": "int", "bounds": [1, 4]}],
        optimizer={"initialTrials": 4, "seed": 0},
    )
    exp = experiment.experiment_from_spec(s, "x", None)
    gs = strategy.strategy_from_spec(s)
    if not last_values:  # Ax's default transforms, for contrast
        for g in gs.nodes_by_name["MBM"].generator_specs:
            g.generator_kwargs.pop("transforms")
    base = {"hidden_size_2": 16, "learning_rate": 1e-3, "dropout": 0.1, "batch_size": 64}
    curve = [0.90, 0.93, 0.95, 0.96]  # the same curve for every model; epochs decide the end
    for h1 in (16, 32, 64, 128):
        for epochs in (1, 4):
            _curve_trial(
                exp,
                {**base, "hidden_size_1": h1, "epochs": epochs},
                curve[:epochs],
                TrialStatus.COMPLETED,
            )
        _curve_trial(
            exp,
            {**base, "hidden_size_1": h1 + 8, "epochs": 4},
            curve[:1],
            TrialStatus.EARLY_STOPPED,
        )
    gs.gen(experiment=exp, n=1, num_trials=1)  # fits the model
    one_epoch = ObservationFeatures(parameters={**base, "hidden_size_1": 48, "epochs": 1})
    mean, _ = gs.adapter.predict([one_epoch])
    predicted = mean["val_acc"][0]
    if last_values:
        assert predicted < 0.93, predicted  # a 1-epoch trial reaches 0.90
    else:
        assert predicted > 0.93, predicted  # the defect this setting avoids
