"""The spec rejects every invalid input with a message that names the field."""

from __future__ import annotations

import copy

import pytest

from nasop import errors, spec
from stubs import manifest


def parse(m):
    return spec.parse_manifest(m)


def test_valid_manifest_parses_with_defaults():
    m = parse(manifest())
    assert m.name == "unit"
    assert m.spec.budget.max_trials == 6
    assert m.spec.trial.queue is None and m.spec.trial.volcano_queue == "default"
    assert m.spec.metric_names == ["val_acc", "num_params"]
    assert m.spec.objectives[1].minimize


def _bad(mutate, *fragments):
    m = manifest()
    mutate(m["spec"])
    with pytest.raises(errors.SpecError) as ei:
        parse(m)
    text = str(ei.value)
    for frag in fragments:
        assert frag in text, text
    return text


def test_bounds_reversed_names_the_field():
    _bad(lambda s: s["searchSpace"][0].update(bounds=[128, 16]), "spec.searchSpace[0]", "reversed")


def test_log_scale_needs_positive_bounds():
    _bad(lambda s: s["searchSpace"][3].update(log=True), "spec.searchSpace[3]", "bounds > 0")


def test_choice_with_one_value():
    _bad(lambda s: s["searchSpace"][4].update(values=[32]), "spec.searchSpace[4]", "two values")


def test_duplicate_parameter_names():
    _bad(lambda s: s["searchSpace"][1].update(name="hidden_size_1"), "duplicate", "hidden_size_1")


def test_objective_metric_also_a_constraint():
    _bad(
        lambda s: s.update(outcomeConstraints=["val_acc >= 0.9"]),
        "outcomeConstraints[0]",
        "already an objective",
    )


def test_constraint_naming_unknown_parameter():
    _bad(
        lambda s: s.update(parameterConstraints=["dropout <= nope"]),
        "parameterConstraints[0]",
        "unknown parameter",
        "nope",
    )


def test_constraint_on_log_parameter_is_refused_before_ax_sees_it():
    _bad(
        lambda s: s.update(parameterConstraints=["hidden_size_2 <= hidden_size_1"]),
        "parameterConstraints[0]",
        "log-scale",
    )


def test_max_trials_below_one():
    _bad(lambda s: s["budget"].update(maxTrials=0), "spec.budget.maxTrials")


def test_unknown_field_is_a_typo_not_ignored():
    _bad(lambda s: s["budget"].update(maxTrails=3), "spec.budget.maxTrails", "Extra inputs")


def test_too_many_objectives():
    def five(s):
        s["objectives"] = [{"metric": f"m{i}", "goal": "maximize"} for i in range(5)]

    _bad(five, "spec.objectives")


def test_bad_goal_and_duration():
    _bad(lambda s: s["objectives"][0].update(goal="up"), "spec.objectives[0].goal")
    _bad(lambda s: s["budget"].update(maxDuration="soon"), "spec.budget.maxDuration")


def test_early_stopping_metric_must_be_known():
    _bad(lambda s: s.update(earlyStopping={"metric": "loss"}), "earlyStopping.metric")


def test_every_error_is_reported_at_once():
    m = manifest()
    m["spec"]["budget"]["maxTrials"] = 0
    m["spec"]["objectives"][0]["goal"] = "up"
    with pytest.raises(errors.SpecError) as ei:
        parse(m)
    assert "maxTrials" in str(ei.value) and "goal" in str(ei.value)


def test_metadata_name_must_be_dns():
    m = manifest()
    m["metadata"]["name"] = "Bad_Name"
    with pytest.raises(errors.SpecError, match=r"metadata\.name"):
        parse(m)


def test_outcome_constraint_parsing():
    c = spec.parse_outcome_constraint("latency_ms <= 5")
    assert (c.metric, c.op, c.bound) == ("latency_ms", "<=", 5.0)
    with pytest.raises(ValueError):
        spec.parse_outcome_constraint("latency_ms < 5")


def test_dump_round_trips_camel_case():
    m = parse(manifest())
    d = m.spec.dump()
    assert "searchSpace" in d and "maxTrials" in d["budget"]
    assert spec.parse_spec(copy.deepcopy(d)) == m.spec


def test_front_rule_needs_its_metric_among_two_objectives():
    front = {"metric": "val_acc", "frontProbability": 0.05}
    assert parse(manifest(earlyStopping=front)).spec.early_stopping.front_probability == 0.05
    _bad(
        lambda s: s.update(objectives=s["objectives"][:1], earlyStopping=front),
        "earlyStopping.frontProbability",
        "one of two or more objectives",
    )
    _bad(
        lambda s: s.update(earlyStopping={**front, "frontProbability": 0}),
        "spec.earlyStopping.frontProbability",
    )
