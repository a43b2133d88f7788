"""Early-stopping rules and global stopping on a real Ax experiment with hand-made learning curves.

Curves are attached as Ax map data (a `step` column = epoch), exactly what the TensorBoard metric
produces, so Ax's own percentile and threshold strategies judge them.
"""

from __future__ import annotations

from typing import Any

import pytest
from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine import pareto, stopping
from nasop.engine.experiment import experiment_from_spec
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial


def _experiment(**overrides: Any):
    s = spec.parse_manifest(manifest("curves", **overrides)).spec
    return s, experiment_from_spec(s, "curves", runner=None)


def _add(
    experiment, h1: int, curve: list[float], complete: bool, loss: list[float] | None = None
) -> int:
    metrics: dict[str, list[float]] = {"val_acc": curve, "num_params": [1000.0 * h1]}
    if loss:
        metrics["val_loss"] = loss
    return add_trial(
        experiment,
        SyntheticTrial(
            {
                "hidden_size_1": h1,
                "hidden_size_2": 32,
                "learning_rate": 1e-3,
                "dropout": 0.1,
                "batch_size": 64,
                "epochs": 2,
            },
            metrics,
            status=TrialStatus.COMPLETED if complete else TrialStatus.RUNNING,
        ),
    )


def _population(experiment, loss: bool = False) -> tuple[int, int]:
    """Five completed curves, one running trial far below them and one above."""
    for k in range(5):
        base = 0.6 + 0.05 * k
        _add(
            experiment,
            32 + k,
            [base, base + 0.1, base + 0.15],
            True,
            [1.0 - base, 0.9 - base, 0.85 - base] if loss else None,
        )
    low = _add(experiment, 20, [0.3, 0.35], False, [0.9, 0.9] if loss else None)
    high = _add(experiment, 100, [0.8, 0.9], False, [0.2, 0.1] if loss else None)
    return low, high


def test_percentile_rule_stops_only_the_losing_curve() -> None:
    s, experiment = _experiment(
        earlyStopping={"metric": "val_acc", "percentile": 50, "minProgression": 1, "minCurves": 5}
    )
    low, high = _population(experiment)
    decisions = stopping.trials_to_stop(s, experiment, [low, high])
    assert decisions == {low: "val_acc below the 50th percentile"}


def test_percentile_rule_waits_for_min_curves_and_min_progression() -> None:
    s, experiment = _experiment(
        earlyStopping={"metric": "val_acc", "minCurves": 6, "minProgression": 1}
    )
    low, high = _population(experiment)
    assert stopping.trials_to_stop(s, experiment, [low, high]) == {}
    s, experiment = _experiment(
        earlyStopping={"metric": "val_acc", "minCurves": 5, "minProgression": 2}
    )
    low, high = _population(experiment)
    assert stopping.trials_to_stop(s, experiment, [low, high]) == {}


@pytest.mark.parametrize(
    "combine, threshold, stopped",
    [
        ("any", 0.2, True),  # the percentile rule fires alone: enough under `any`
        ("all", 0.2, False),  # the threshold rule (0.35 is above 0.2) does not agree
        ("all", 0.5, True),  # both fire
    ],
)
def test_rules_combine_with_any_and_all(combine: str, threshold: float, stopped: bool) -> None:
    s, experiment = _experiment(
        earlyStopping={
            "combine": combine,
            "rules": [
                {"metric": "val_acc", "percentile": 50, "minProgression": 1, "minCurves": 5},
                {"metric": "val_acc", "threshold": threshold, "minProgression": 1, "minCurves": 1},
            ],
        }
    )
    low, high = _population(experiment)
    decisions = stopping.trials_to_stop(s, experiment, [low, high])
    assert high not in decisions
    assert (low in decisions) is stopped
    if stopped and combine == "all":
        assert decisions[low] == (
            f"val_acc below the 50th percentile and val_acc worse than {threshold:g}"
        )


def test_rule_on_a_curve_that_is_not_an_objective_uses_its_own_goal() -> None:
    s, experiment = _experiment(
        earlyStopping={
            "rules": [
                {
                    "metric": "val_loss",
                    "goal": "minimize",
                    "threshold": 0.5,
                    "minProgression": 1,
                    "minCurves": 1,
                }
            ]
        }
    )
    assert "val_loss" in experiment.metrics and experiment.metrics["val_loss"].lower_is_better
    low, high = _population(experiment, loss=True)
    assert stopping.trials_to_stop(s, experiment, [low, high]) == {low: "val_loss worse than 0.5"}


def _obs(values: list[tuple[float, float]]) -> list[pareto.Observation]:
    return [
        pareto.Observation(trial=i, parameters={}, metrics={"val_acc": a, "num_params": n})
        for i, (a, n) in enumerate(values)
    ]


def test_improvement_stall_needs_a_full_window_then_compares_hypervolumes() -> None:
    s = spec.parse_manifest(
        manifest(
            "stall",
            budget={"maxTrials": 40, "stopWhenImprovementBelow": 0.05, "improvementWindow": 3},
        )
    ).spec
    improving = [(0.6 + 0.02 * i, 15000 - 500 * i) for i in range(8)]
    assert stopping.improvement_stall(s, _obs(improving[:5]), initial_trials=2) is None  # < 2w
    assert stopping.improvement_stall(s, _obs(improving), initial_trials=2) is None
    flat = improving[:5] + [(0.55, 19000)] * 3  # three dominated trials: no growth at all
    why = stopping.improvement_stall(s, _obs(flat), initial_trials=2)
    assert why is not None and "0.00%" in why and "last 3 completed trials" in why
    assert "stopWhenImprovementBelow=0.05" in why
    assert stopping.improvement_stall(s, _obs(flat), initial_trials=6) is None  # Sobol phase


def test_improvement_stall_is_off_without_the_budget_field() -> None:
    s = spec.parse_manifest(manifest("nostall")).spec
    flat = [(0.7, 10000.0)] * 30
    assert stopping.improvement_stall(s, _obs(flat), initial_trials=2) is None


def test_single_objective_hypervolume_is_the_best_value_above_the_reference() -> None:
    import numpy as np

    assert pareto.hypervolume(np.array([[0.7], [0.9], [0.4]]), np.array([0.5])) == pytest.approx(
        0.4
    )


def _pareto_population(experiment) -> tuple[int, int, int]:
    """Five completed mid-size curves; running: a small model with low accuracy (the cheap end
    of the front), a big model below all of them, and a big model above them."""
    for k in range(5):
        base = 0.6 + 0.05 * k
        _add(experiment, 32 + k, [base, base + 0.1, base + 0.15], True)
    small = _add(experiment, 20, [0.3, 0.35], False)
    big_poor = _add(experiment, 100, [0.5, 0.55], False)
    big_good = _add(experiment, 101, [0.8, 0.95], False)
    return small, big_poor, big_good


def test_pareto_rule_keeps_the_small_model_that_percentile_stops() -> None:
    rule = {"metric": "val_acc", "minProgression": 1, "minCurves": 5}
    s, experiment = _experiment(earlyStopping={**rule, "percentile": 50})
    small, big_poor, big_good = _pareto_population(experiment)
    running = [small, big_poor, big_good]
    assert set(stopping.trials_to_stop(s, experiment, running)) == {small, big_poor}
    s, experiment = _experiment(earlyStopping={**rule, "dominatedBy": 3})
    small, big_poor, big_good = _pareto_population(experiment)
    # big_poor: all 5 completed trials are smaller and more accurate at epoch 1; small is the
    # smallest model, so no trial dominates it; big_good is the most accurate
    assert stopping.trials_to_stop(s, experiment, running) == {
        big_poor: "dominated by 3 trials on every objective (val_acc at the same epoch)"
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"dominatedBy": 6},  # 5 trials beat big_poor (big_good is bigger)
        {"minCurves": 8},  # 7 other trials have a point at epoch 1
        {"minProgression": 2},  # running trials are at epoch 1
        {"maxProgression": 0.5},  # ... past the last epoch this rule judges
    ],
)
def test_pareto_rule_thresholds(overrides: dict[str, Any]) -> None:
    rule = {"metric": "val_acc", "dominatedBy": 1, "minProgression": 0, "minCurves": 5, **overrides}
    s, experiment = _experiment(earlyStopping=rule)
    small, big_poor, big_good = _pareto_population(experiment)
    assert stopping.trials_to_stop(s, experiment, [small, big_poor, big_good]) == {}


@pytest.mark.parametrize(
    "rule, field, words",
    [
        (
            {"metric": "val_acc", "dominatedBy": 1, "percentile": 50},
            "earlyStopping",
            "one of percentile, threshold, dominatedBy, frontProbability or gainRatio",
        ),
        (
            {"metric": "val_loss", "goal": "minimize", "dominatedBy": 1},
            "earlyStopping.dominatedBy",
            "must be one of two or more objectives",
        ),
    ],
)
def test_pareto_rule_errors_name_the_field(rule: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(Exception) as e:
        spec.parse_manifest(manifest("curves", earlyStopping=rule))
    assert field in str(e.value) and words in str(e.value)


def test_pareto_rule_needs_two_objectives() -> None:
    with pytest.raises(Exception) as e:
        spec.parse_manifest(
            manifest(
                "curves",
                objectives=[{"metric": "val_acc", "goal": "maximize"}],
                earlyStopping={"metric": "val_acc", "dominatedBy": 1},
            )
        )
    assert "earlyStopping.dominatedBy" in str(e.value)


def _front_population(experiment) -> dict[str, int]:
    """Five completed 3-epoch curves at 10k-14k params ending at 0.75-0.95 (each gains 0.05 from
    step 1 to 2); running at step 1: a small model on the front, a bigger one that cannot catch
    the front at its size, one that will, and one past the num_params threshold (20000)."""
    for k in range(5):
        base = 0.6 + 0.05 * k
        _add(experiment, 10 + k, [base, base + 0.1, base + 0.15], True)
    return {
        "small": _add(experiment, 5, [0.55, 0.6], False),
        "poor": _add(experiment, 15, [0.5, 0.55], False),
        "good": _add(experiment, 16, [0.8, 0.93], False),
        "huge": _add(experiment, 25, [0.9, 0.99], False),
    }


FRONT = {"metric": "val_acc", "frontProbability": 0.05, "minProgression": 0, "minCurves": 5}


def test_front_rule_stops_trials_that_cannot_reach_the_front_at_their_size() -> None:
    s, experiment = _experiment(earlyStopping=FRONT)
    t = _front_population(experiment)
    decisions = stopping.trials_to_stop(s, experiment, list(t.values()))
    # poor: 0.55 + 0.05 cannot beat 0.95, reached by the 14k trial; good: 0.93 + 0.05 can;
    # small: above its bar (the 0.5 threshold; nothing smaller has completed), on the front
    assert set(decisions) == {t["poor"], t["huge"]}
    assert decisions[t["poor"]] == (
        "P(final val_acc > 0.95 needed at num_params 15000) = 0.00 < 0.05 "
        "(step 1 of 2, gains of 5 curves)"
    )
    assert "num_params 25000 is past its objective threshold" in decisions[t["huge"]]


@pytest.mark.parametrize(
    "overrides",
    [
        {"minCurves": 6},  # 5 curves have both step 1 and step 2
        {"minProgression": 2},  # running trials are at step 1
        {"maxProgression": 0.5},  # ... past the last step this rule judges
        {"epochsParameter": "epochs"},  # epochs: 2, so step 1 is their last: nothing to save
    ],
)
def test_front_rule_thresholds(overrides: dict[str, Any]) -> None:
    space = [
        {"name": "epochs", "type": "int", "bounds": [1, 4]} if p["name"] == "epochs" else p
        for p in manifest()["spec"]["searchSpace"]
    ]
    s, experiment = _experiment(earlyStopping={**FRONT, **overrides}, searchSpace=space)
    t = _front_population(experiment)
    assert stopping.trials_to_stop(s, experiment, [t["poor"], t["huge"]]) == {}


def test_front_rule_level_decides_on_spread_gains() -> None:
    gains = [-0.01, 0.0, 0.01, 0.02, 0.03]
    assert stopping.chance_above(0.9, [-0.01, 0.0, 0.01], 0.9) == pytest.approx(0.5)
    p = [stopping.chance_above(0.9, gains, bar) for bar in (0.9, 0.92, 0.94, 0.96)]
    assert p == sorted(p, reverse=True) and 0.6 < p[0] < 0.8 and 0.0 < p[-1] < 0.01
    assert stopping.chance_above(0.9, [], 0.99) == 1.0  # no model: no stop


def test_needed_to_add_is_the_front_staircase_at_the_trials_size() -> None:
    finals = [(0.90, (-10.0,)), (0.95, (-20.0,)), (0.97, (-40.0,))]  # (acc, -size)
    assert stopping.needed_to_add((-5.0,), finals, floor=0.5) == 0.5
    assert stopping.needed_to_add((-10.0,), finals) == 0.90
    assert stopping.needed_to_add((-30.0,), finals) == 0.95
    assert stopping.needed_to_add((-50.0,), finals, known_floor=(-45.0,)) == float("inf")


@pytest.mark.parametrize(
    "rule, objectives, words",
    [
        (
            {**FRONT, "percentile": 50},
            None,
            "one of percentile, threshold, dominatedBy, frontProbability",
        ),
        (
            {**FRONT, "metric": "val_loss", "goal": "minimize"},
            None,
            "earlyStopping.frontProbability: the rule predicts",
        ),
        (FRONT, [{"metric": "val_acc", "goal": "maximize"}], "one of two or more objectives"),
        (
            {"rules": [FRONT, {"metric": "num_params", "percentile": 50}]},
            None,
            "earlyStopping.rules[0].frontProbability: ['num_params'] is watched",
        ),
        ({**FRONT, "frontProbability": 1.5}, None, "frontProbability"),
    ],
)
def test_front_rule_errors_name_the_field(
    rule: dict[str, Any], objectives: list[dict[str, Any]] | None, words: str
) -> None:
    extra = {"objectives": objectives} if objectives else {}
    with pytest.raises(Exception) as e:
        spec.parse_manifest(manifest("curves", earlyStopping=rule, **extra))
    assert words in str(e.value), str(e.value)
