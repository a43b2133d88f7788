"""earlyStopping.epochsParameter: a trial stopped after k epochs is modelled as a k-epoch trial."""

from __future__ import annotations

import pytest
from ax.core.base_trial import TrialStatus
from ax.core.observation import ObservationFeatures

from nasop import errors, spec
from nasop.engine import experiment, strategy
from nasop.generators import stopped_trials
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial

BASE = {"hidden_size_2": 16, "learning_rate": 1e-3, "dropout": 0.1, "batch_size": 64}
CURVE = [0.90, 0.93, 0.95, 0.96]  # the same curve for every model; epochs decide the end


def _spec(epochs_parameter=None, epochs=None, **es):
    space = [p for p in manifest()["spec"]["searchSpace"] if p["name"] != "epochs"]
    rule = {"metric": "val_acc", "percentile": 50, **es}
    if epochs_parameter is not None:
        rule["epochsParameter"] = epochs_parameter
    m = manifest(
        searchSpace=[*space, epochs or {"name": "epochs", "type": "int", "bounds": [1, 4]}],
        optimizer={"initialTrials": 4, "seed": 0},
        earlyStopping=rule,
    )
    return spec.parse_manifest(m).spec


def _trial(exp, h1, values, status, epochs=4):
    n = 784 * h1 + h1 * 16 + 170
    params = {**BASE, "hidden_size_1": h1, "epochs": epochs}
    return add_trial(
        exp, SyntheticTrial(params, {"num_params": [float(n)], "val_acc": values}, status=status)
    )


def _search_with_stopped_trials(s):
    """4-epoch trials completed, and twice as many 4-epoch trials stopped after one epoch."""
    exp = experiment.experiment_from_spec(s, "x", None)
    for h1 in (16, 32, 64, 128):
        _trial(exp, h1, CURVE, TrialStatus.COMPLETED)
        _trial(exp, h1 + 4, CURVE[:1], TrialStatus.EARLY_STOPPED)
        _trial(exp, h1 + 8, CURVE[:1], TrialStatus.EARLY_STOPPED)
    return exp


def _predict(gs, epochs):
    f = ObservationFeatures(parameters={**BASE, "hidden_size_1": 48, "epochs": epochs})
    mean, _ = gs.adapter.predict([f])
    return mean["val_acc"][0]


def test_trained_epochs_counts_logged_steps_of_stopped_trials_only():
    exp = experiment.experiment_from_spec(_spec(), "x", None)
    _trial(exp, 16, CURVE, TrialStatus.COMPLETED)
    _trial(exp, 32, CURVE[:2], TrialStatus.EARLY_STOPPED)
    _trial(exp, 64, CURVE[:1], TrialStatus.EARLY_STOPPED)
    _trial(exp, 128, CURVE[:3], TrialStatus.RUNNING)
    assert stopped_trials.trained_epochs(exp) == {1: 2, 2: 1}


@pytest.mark.parametrize("honest", [False, True])
def test_stopped_trials_do_not_teach_the_model_that_long_training_is_bad(honest):
    """Today the stopped trials' epoch-1 accuracy is read as their 4-epoch result, so a 4-epoch
    candidate is predicted well below the 0.96 the completed ones reach. With epochsParameter
    they are 1-epoch points: 4 epochs predicted at 0.96, 1 epoch at 0.90."""
    s = _spec("epochs" if honest else None)
    exp = _search_with_stopped_trials(s)
    gs = strategy.strategy_from_spec(s)
    # through saved state, as the search keeps it: the transform and its config survive
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), gs)
    gs = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle()).strategy
    gs.gen(experiment=exp, n=1, num_trials=1)
    four, one = _predict(gs, 4), _predict(gs, 1)
    if honest:
        assert four == pytest.approx(0.96, abs=0.01) and one == pytest.approx(0.90, abs=0.01)
    else:
        assert four < 0.94, four  # the defect the field removes
    # the experiment itself is untouched: the trials keep their planned parameters
    assert all(t.arms[0].parameters["epochs"] == 4 for t in exp.trials.values())


def test_transform_is_first_on_model_node_only_when_asked():
    plain = strategy.strategy_from_spec(_spec())
    kwargs = plain.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert stopped_trials.StoppedAsShorter not in kwargs["transforms"]
    gs = strategy.strategy_from_spec(_spec("epochs"))
    kwargs = gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert kwargs["transforms"][0] is stopped_trials.StoppedAsShorter
    assert kwargs["transform_configs"][stopped_trials.CONFIG_KEY] == {"parameter": "epochs"}
    assert kwargs["transform_configs"]["Derelativize"]  # Ax's own configs kept


@pytest.mark.parametrize(
    "name, epochs, message",
    [
        ("epoch", None, "earlyStopping.epochsParameter: unknown parameter 'epoch'"),
        (
            "epochs",
            {"name": "epochs", "type": "choice", "values": [1, 2, 4]},
            "'epochs' is a choice parameter; it must be an int parameter",
        ),
        (
            "epochs",
            {"name": "epochs", "type": "int", "bounds": [0, 4]},
            "lower bound must be >= 1",
        ),
    ],
)
def test_epochs_parameter_is_validated(name, epochs, message):
    with pytest.raises(errors.SpecError, match=message):
        _spec(name, epochs)


def test_epochs_parameter_is_not_a_rule_field():
    es = _spec("epochs").early_stopping
    assert es is not None and es.epochs_parameter == "epochs"
    assert [r.describe() for r in es.all_rules] == ["val_acc below the 50th percentile"]
