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
            "one of percentile, threshold or dominatedBy",
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
