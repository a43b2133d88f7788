"""Spec -> Ax: search space, thresholds, constraints and the generation strategy."""

from __future__ import annotations

import sys

import pytest
from ax.core.parameter import ChoiceParameter, FixedParameter, RangeParameter

from nasop import errors, spec
from nasop.engine import experiment, strategy
from stubs import manifest


def _spec(**kw):
    return spec.parse_manifest(manifest(**kw)).spec


def test_search_space_mapped():
    e = experiment.experiment_from_spec(_spec(), "x", None)
    p = e.search_space.parameters
    assert isinstance(p["hidden_size_1"], RangeParameter)
    assert p["hidden_size_1"].lower == 16 and p["hidden_size_1"].upper == 128
    assert p["hidden_size_1"].log_scale and p["hidden_size_1"].parameter_type.name == "INT"
    assert p["learning_rate"].parameter_type.name == "FLOAT" and p["learning_rate"].log_scale
    assert not p["dropout"].log_scale
    assert isinstance(p["batch_size"], ChoiceParameter) and p["batch_size"].is_ordered
    assert p["batch_size"].values == [32, 64, 128, 256]
    assert isinstance(p["epochs"], FixedParameter) and p["epochs"].value == 2


def test_objectives_thresholds_and_constraints_mapped():
    s = _spec(outcomeConstraints=["latency_ms <= 5"])
    e = experiment.experiment_from_spec(s, "x", None)
    oc = e.optimization_config
    assert oc.is_moo_problem
    assert experiment.objective_string(s) == "val_acc, -num_params"
    th = {t.metric_names[0]: (t.op.name, t.bound) for t in oc.objective_thresholds}
    assert th == {"val_acc": ("GEQ", 0.5), "num_params": ("LEQ", 20000.0)}
    cons = [(c.metric_names[0], c.op.name, c.bound) for c in oc.outcome_constraints]
    assert cons == [("latency_ms", "LEQ", 5.0)]
    assert set(e.metrics) == {"val_acc", "num_params", "latency_ms"}
    assert e.metrics["num_params"].lower_is_better and not e.metrics["val_acc"].lower_is_better


def test_parameter_constraint_mapped():
    s = _spec(
        searchSpace=[
            {"name": "a", "type": "int", "bounds": [1, 10]},
            {"name": "b", "type": "int", "bounds": [1, 10]},
        ],
        parameterConstraints=["b <= a"],
    )
    e = experiment.experiment_from_spec(s, "x", None)
    (c,) = e.search_space.parameter_constraints
    assert c.constraint_dict == {"a": -1.0, "b": 1.0} and c.bound == 0.0


def test_strategies():
    gs = strategy.strategy_from_spec(_spec())
    assert [n.name for n in gs._nodes] == ["Sobol", "MBM"]
    assert gs._nodes[0].transition_criteria[0].threshold == 4
    gs = strategy.strategy_from_spec(_spec(optimizer={"method": "sobol"}))
    assert [n.name for n in gs._nodes] == ["Sobol"]


def test_saasbo_without_its_extra_is_a_clear_error(monkeypatch):
    pytest.importorskip("ax")
    monkeypatch.setitem(sys.modules, "numpyro", None)  # as if nasop[saasbo] were not installed
    with pytest.raises(errors.MissingDependencyError, match="jax and numpyro") as e:
        strategy.strategy_from_spec(_spec(optimizer={"method": "saasbo"}))
    assert "nasop[saasbo]" in e.value.hint


def test_initial_trials_default():
    s = _spec(optimizer={}, budget={"maxTrials": 48, "parallelism": 4})
    assert strategy.initial_trials(s) == 10  # 2 per searched parameter
    s = _spec(optimizer={}, budget={"maxTrials": 6})
    assert strategy.initial_trials(s) == 3
