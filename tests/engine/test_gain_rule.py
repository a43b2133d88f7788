"""The gain rule (`earlyStopping.gainRatio`): the expected hypervolume a trial adds by finishing,
priced against what the search lately bought per trainer second.

The expectation is checked against a Monte Carlo estimate of the same quantity (the kernel
density sampled, each sample's added hypervolume computed by BoTorch's partitioning), and the
rule on a real Ax experiment with hand-made curves, as tests/engine/test_stopping.py does.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np
import pytest
from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine import pareto, stopping
from nasop.engine.experiment import experiment_from_spec
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial


def _monte_carlo(current, gains, known, finals, reference, n=40_000, seed=0) -> float:
    """E[added hypervolume] by sampling the kernel density stopping.expected_gain integrates."""
    rng = np.random.default_rng(seed)
    h = stopping.bandwidth(gains)
    v = current + rng.choice(gains, n) + h * rng.standard_normal(n)
    ref = np.asarray(reference, dtype=float)
    base_pts = np.array([[f, *o] for f, o in finals], dtype=float)
    base = pareto.hypervolume(base_pts, ref)
    # the added hypervolume is piecewise linear in v: tabulate it finely, then interpolate
    grid = np.linspace(min(v.min(), ref[0]), max(v.max(), ref[0]) + 1e-9, 2001)
    added = [pareto.hypervolume(np.vstack([base_pts, [g, *known]]), ref) - base for g in grid]
    return float(np.interp(v, grid, added).mean())


FINALS_2D = [(0.90, (-10.0,)), (0.95, (-20.0,)), (0.97, (-40.0,))]  # (val_acc, -size)
GAINS = [0.005, 0.01, 0.012, 0.02, 0.03, 0.004]


@pytest.mark.parametrize(
    "current, known",
    [
        (0.93, (-15.0,)),  # below its bar (0.90 at 10k), between two front points
        (0.955, (-30.0,)),  # must beat 0.95; above 0.97 it gains a whole box
        (0.96, (-45.0,)),  # past every front point's size: the bar is the top, 0.97
        (0.80, (-5.0,)),  # smaller than the front: the bar is the reference, 0.5
    ],
)
def test_expected_gain_matches_monte_carlo(current: float, known: tuple[float, ...]) -> None:
    reference = (0.5, -60.0)
    exact = stopping.expected_gain(current, GAINS, known, FINALS_2D, reference)
    sampled = _monte_carlo(current, GAINS, known, FINALS_2D, reference)
    assert exact == pytest.approx(sampled, rel=0.02, abs=1e-6)


def test_expected_gain_with_two_known_objectives() -> None:
    finals = [(0.9, (-10.0, -3.0)), (0.95, (-20.0, -1.0)), (0.97, (-40.0, -2.0))]
    reference = (0.5, -60.0, -5.0)
    exact = stopping.expected_gain(0.94, GAINS, (-25.0, -2.5), finals, reference)
    assert exact > 0
    assert exact == pytest.approx(
        _monte_carlo(0.94, GAINS, (-25.0, -2.5), finals, reference), rel=0.02
    )


def test_no_gain_past_a_threshold_or_without_a_model() -> None:
    reference = (0.5, -60.0)
    assert stopping.expected_gain(0.99, GAINS, (-70.0,), FINALS_2D, reference) == 0.0
    assert stopping.expected_gain(0.99, [], (-15.0,), FINALS_2D, reference) == 0.0


def test_recent_rate_prices_a_trainer_second() -> None:
    ref = (0.0, 0.0)
    ended = [
        stopping.Ended(1.0, 3.0, (1.0, 1.0)),  # completed first: the front before the window
        stopping.Ended(1.5, 2.0, None),  # stopped inside the window: its seconds count
        stopping.Ended(2.0, 4.0, (2.0, 1.0)),  # completed in the window: adds 1 of area
    ]
    assert stopping.recent_rate(ended, ref, window=1) == pytest.approx(1.0 / 6.0)
    assert stopping.recent_rate(ended, ref, window=2) is None  # 3 completed trials needed


def _curve(values: list[float], size: float, final: int = 3, ran: float = 2.0) -> stopping.Curve:
    return stopping.Curve(dict(enumerate(values)), (-size,), final, len(values) > final, ran)


def test_keeps_a_long_shot_at_the_top_and_stops_a_sliver() -> None:
    """Where the front rule judges a probability, the gain rule judges what is at stake: a
    trial that can only move a crowded stretch of the front a little is stopped even with a
    fair chance, and one with a small chance of a whole new box above the front runs on."""
    front_points = [(0.90, 10.0), (0.93, 20.0), (0.94, 22.0), (0.95, 23.0), (0.96, 24.0)]
    front_points.append((0.97, 40.0))
    gains = [0.01, 0.02, 0.03, 0.04, 0.05, 0.02]  # each completed curve's gain, step 0 to 3
    completed = {
        i: _curve([v - g, v - 0.6 * g, v - 0.3 * g, v], size)
        for i, ((v, size), g) in enumerate(zip(front_points, gains))
    }
    sliver = 10  # at 21.5k it must beat 0.93, then 0.94 at 22k, 0.95 at 23k: slivers of width
    long_shot = 11  # at 41k it must beat 0.97, the top of the front: above it, all of [41k, 60k]
    curves = {**completed, sliver: _curve([0.90], 21.5), long_shot: _curve([0.925], 41.0)}
    reference = (0.5, -60.0)
    rule = spec.StoppingRule(metric="val_acc", gain_ratio=1.0, min_progression=0, min_curves=5)
    front = spec.StoppingRule(
        metric="val_acc", front_probability=0.3, min_progression=0, min_curves=5
    )
    # each has 6 s left (3 steps at 2 s); the sliver's gain is 0.011, the long shot's 0.032
    calls = stopping.gain_calls(rule, curves, [sliver, long_shot], reference, rate=0.003)
    by_front = stopping.front_calls(front, curves, [sliver, long_shot], 0.5, (-60.0,))
    assert set(calls) == {sliver}
    assert set(by_front) == {long_shot}  # P = 0.18 < 0.3; the sliver's P is 0.45
    call = calls[sliver]
    assert call.step == 0 and call.final_step == 3 and call.seconds == pytest.approx(6.0)
    assert call.gain == pytest.approx(0.0106, abs=5e-4)
    assert call.needed == pytest.approx(0.93) and call.probability == pytest.approx(0.45, abs=0.01)
    # no price yet (too few completed trials): nothing is judged
    assert stopping.gain_calls(rule, curves, [sliver, long_shot], reference, rate=None) == {}


def test_a_trial_on_the_front_or_without_seconds_is_never_stopped() -> None:
    completed = {
        i: _curve([0.6 + 0.05 * i, 0.62 + 0.05 * i, 0.63 + 0.05 * i, 0.64 + 0.05 * i], 10.0 + i)
        for i in range(5)
    }
    rule = spec.StoppingRule(metric="val_acc", gain_ratio=100.0, min_progression=0, min_curves=5)
    on_front = {**completed, 9: _curve([0.7], 5.0)}  # the smallest: above its bar (0.5)
    unknown = {**completed, 9: _curve([0.55], 12.0, ran=0.0)}
    for curves in (on_front, unknown):
        assert stopping.gain_calls(rule, curves, [9], (0.5, -60.0), rate=1.0) == {}


GAIN = {"metric": "val_acc", "gainRatio": 1.0, "minProgression": 0, "minCurves": 5}


def _add(experiment, h1: int, curve: list[float], status: TrialStatus, end: float) -> int:
    index = add_trial(
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
            {"val_acc": curve, "num_params": [1000.0 * h1]},
            status=status,
        ),
    )
    if status is not TrialStatus.RUNNING:  # ended in this order, one second apart
        stamp = datetime.datetime.fromtimestamp(end)
        experiment.trials[index]._time_completed = stamp
    return index


def _gain_experiment(**overrides: Any):
    s = spec.parse_manifest(manifest("curves", earlyStopping={**GAIN, **overrides})).spec
    experiment = experiment_from_spec(s, "curves", runner=None)
    for k in range(9):  # 3-step curves at 10k-18k params; each completion lifts the front
        base = 0.5 + 0.03 * k
        _add(experiment, 10 + k, [base, base + 0.1, base + 0.12], TrialStatus.COMPLETED, 1000 + k)
    sliver = _add(experiment, 19, [0.7, 0.75], TrialStatus.RUNNING, 0)
    return s, experiment, sliver


def test_gain_rule_on_an_experiment_gives_its_numbers() -> None:
    s, experiment, sliver = _gain_experiment()
    ran = {i: 10.0 for i in experiment.trials}
    decisions = stopping.trials_to_stop(s, experiment, [sliver], ran=ran)
    assert set(decisions) == {sliver}
    why = decisions[sliver]
    assert why.startswith("expected hypervolume gain ")
    assert "s left" in why and "< 1 x " in why and "the last 8 completed trials" in why
    assert "P(final val_acc > 0.86 needed at num_params 19000) = " in why
    assert why.endswith("(step 1 of 2)")


def test_gain_rule_waits_for_seconds_and_a_reference() -> None:
    s, experiment, sliver = _gain_experiment()
    assert stopping.trials_to_stop(s, experiment, [sliver], ran={}) == {}
    objectives = [
        {"metric": "val_acc", "goal": "maximize"},
        {"metric": "num_params", "goal": "minimize"},
    ]
    bare = spec.parse_manifest(manifest("curves", earlyStopping=GAIN, objectives=objectives)).spec
    ran = {i: 10.0 for i in experiment.trials}
    assert stopping.trials_to_stop(bare, experiment, [sliver], ran=ran) == {}
    fixed = {"val_acc": 0.5, "num_params": 20000.0}  # the search's fixed reference point
    assert set(stopping.trials_to_stop(bare, experiment, [sliver], fixed, ran)) == {sliver}


@pytest.mark.parametrize(
    "rule, objectives, words",
    [
        ({**GAIN, "frontProbability": 0.2}, None, "frontProbability or gainRatio, not"),
        ({**GAIN, "gainRatio": 0}, None, "gainRatio"),
        (GAIN, [{"metric": "val_acc", "goal": "maximize"}], "earlyStopping.gainRatio: the rule"),
        (
            {"rules": [GAIN, {"metric": "num_params", "percentile": 50}]},
            None,
            "earlyStopping.rules[0].gainRatio: ['num_params'] is watched",
        ),
    ],
)
def test_gain_rule_errors_name_the_field(
    rule: dict[str, Any], objectives: list[dict[str, Any]] | None, words: str
) -> None:
    extra = {"objectives": objectives} if objectives else {}
    with pytest.raises(Exception) as e:
        spec.parse_manifest(manifest("curves", earlyStopping=rule, **extra))
    assert words in str(e.value), str(e.value)


def test_bandwidth_is_silverman() -> None:
    gains = [0.0, 0.01, 0.02, 0.03]
    sd = float(np.std(gains, ddof=1))
    assert stopping.bandwidth(gains) == pytest.approx(1.06 * sd * len(gains) ** -0.2)
    assert math.isfinite(stopping.bandwidth([0.01]))


def test_unit_features_put_each_parameter_on_its_own_scale() -> None:
    s = spec.parse_manifest(manifest("curves")).spec
    names = [p.name for p in s.search_space]
    params = {
        "hidden_size_1": 16,
        "hidden_size_2": 128,
        "learning_rate": 1e-3,
        "dropout": 0.25,
        "batch_size": 64,
        "epochs": 2,
    }
    assert set(params) == set(names), names  # the stub's space, as the test reads it
    features = stopping.unit_features(params, s.search_space, skip="epochs")
    by_name = dict(zip([n for n in names if n != "epochs"], features))
    space = {p.name: p for p in s.search_space}
    lr = space["learning_rate"]
    assert lr.log and lr.bounds is not None
    low, high = (math.log(b) for b in lr.bounds)
    assert by_name["learning_rate"] == pytest.approx((math.log(1e-3) - low) / (high - low))
    assert min(features) >= 0.0 and max(features) <= 1.0
    assert len(features) == len(names) - 1  # epochs left out: the final step already says it


def test_unordered_choices_are_one_coordinate_per_value() -> None:
    colour = spec.Parameter(name="colour", type="choice", values=["red", "blue"], ordered=False)
    size = spec.Parameter(name="size", type="choice", values=[1, 2, 4])
    width = spec.Parameter(name="width", type="int", bounds=[0, 10])
    space = [colour, size, width]
    assert stopping.unit_features({"colour": "blue", "size": 4, "width": 5}, space) == (
        0.0,
        1.0,
        1.0,
        0.5,
    )


def test_similar_parameters_weigh_more() -> None:
    w = stopping.similarity_weights((0.5, 0.5), [(0.5, 0.55), (0.9, 0.1), (0.45, 0.5)])
    assert sum(w) == pytest.approx(1.0)
    assert w[0] == pytest.approx(w[2]) and w[1] < w[0] / 5  # 0.46, 0.08, 0.46
    assert stopping.similarity_weights(None, [(0.1,), (0.2,)]) == [0.5, 0.5]


def test_weighted_expected_gain_matches_monte_carlo() -> None:
    reference = (0.5, -60.0)
    weights = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05]
    exact = stopping.expected_gain(0.955, GAINS, (-30.0,), FINALS_2D, reference, weights)
    rng = np.random.default_rng(1)
    h = stopping.bandwidth(GAINS, weights)
    v = 0.955 + rng.choice(GAINS, 40_000, p=weights) + h * rng.standard_normal(40_000)
    ref = np.asarray(reference)
    base_pts = np.array([[f, *o] for f, o in FINALS_2D])
    base = pareto.hypervolume(base_pts, ref)
    grid = np.linspace(v.min(), v.max(), 2001)
    added = [pareto.hypervolume(np.vstack([base_pts, [g, -30.0]]), ref) - base for g in grid]
    assert exact == pytest.approx(float(np.interp(v, grid, added).mean()), rel=0.02)
    assert exact != pytest.approx(
        stopping.expected_gain(0.955, GAINS, (-30.0,), FINALS_2D, reference), rel=0.02
    )


def test_the_gains_of_similar_trials_decide() -> None:
    """Curves trained with a low learning rate (feature 0.1) still gain 0.05 after the first
    epoch, those with a high one (0.9) 0.005. A low-rate trial 0.03 under its bar is likely to
    pass it: kept when the gains are weighed by similarity, stopped when every curve counts
    the same (most of them barely move)."""
    finals: dict[int, stopping.Curve] = {}
    for i in range(8):
        lr, gain = (0.1, 0.05) if i < 2 else (0.9, 0.005)
        v = 0.90 + 0.005 * i
        finals[i] = stopping.Curve(
            {0: v - gain, 1: v}, (-(10.0 + i),), 1, True, 2.0, (lr + 0.01 * i,)
        )
    mine = stopping.Curve({0: 0.90}, (-30.0,), 1, False, 2.0, (0.1,))
    blind = stopping.Curve({0: 0.90}, (-30.0,), 1, False, 2.0, None)
    rule = spec.StoppingRule(metric="val_acc", gain_ratio=1.0, min_progression=0, min_curves=5)
    reference = (0.5, -60.0)
    rate = 0.12  # x 2 s left: stop below 0.24 of expected hypervolume
    assert stopping.gain_calls(rule, {**finals, 9: mine}, [9], reference, rate) == {}  # 0.44
    call = stopping.gain_calls(rule, {**finals, 9: blind}, [9], reference, rate)[9]
    assert call.gain == pytest.approx(0.123, abs=0.005)
    assert call.probability == pytest.approx(0.23, abs=0.01)  # 0.84 weighed by similarity
    assert call.needed == pytest.approx(0.935)
