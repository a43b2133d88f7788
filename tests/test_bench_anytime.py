"""The search benchmarks' anytime scores (bench/_problems.py, bench/search_quality.py): the
hypervolume of the trials a run finished within a budget of trainer seconds, summed in trial
order."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
)

import _problems
import search_quality
import tutorial_search


def _problem(cost: bool = True) -> _problems.Problem:
    """Two maximised objectives with thresholds 0: the hypervolume of one point is its product."""
    manifest = {
        "searchSpace": [{"name": "x", "type": "float", "bounds": [0.0, 1.0]}],
        "objectives": [
            {"metric": "a", "goal": "maximize", "threshold": 0.0},
            {"metric": "b", "goal": "maximize", "threshold": 0.0},
        ],
    }
    return _problems.Problem(
        "toy",
        manifest,
        lambda p: {"a": p["x"], "b": 1 - p["x"]},
        max_hv=1.0,
        cost=(lambda p: 100.0 * p["x"]) if cost else None,
    )


A = {"a": 0.5, "b": 0.5}  # hypervolume 0.25
B = {"a": 1.0, "b": 1.0}  # dominates A: 1.0
C = {"a": 2.0, "b": 0.1}  # adds 0.1 to B's 1.0
TRIALS = [(10.0, A), (20.0, B), (5.0, C)]


@pytest.mark.parametrize(
    ("seconds", "expected", "n"),
    [
        (0.0, 0.0, 0),
        (5.0, 0.0, 0),  # C costs 5 s but runs third: seconds accumulate in trial order
        (9.9, 0.0, 0),
        (10.0, 0.25, 1),  # a trial counts once the running sum including it is within the budget
        (29.9, 0.25, 1),
        (30.0, 1.0, 2),
        (35.0, 1.1, 3),
        (1e9, 1.1, 3),  # past the run's total: all its trials
    ],
)
def test_hv_at_seconds(seconds: float, expected: float, n: int) -> None:
    hv, done = _problems.hv_at_seconds(TRIALS, seconds, _problem().hv_fraction)
    assert done == n
    assert hv == pytest.approx(expected)


def test_seconds_at() -> None:
    assert _problems.seconds_at(TRIALS, 0) == 0.0
    assert _problems.seconds_at(TRIALS, 2) == 30.0
    assert _problems.seconds_at(TRIALS, 9) == 35.0


def test_cost_is_carried_but_not_an_objective() -> None:
    problem = _problem()
    metrics = problem.evaluate({"x": 0.25})
    kept = search_quality._with_cost(problem, {"x": 0.25}, metrics)
    assert kept == {"a": 0.25, "b": 0.75, _problems.COST: 25.0}
    assert metrics == {"a": 0.25, "b": 0.75}  # what the optimiser is told
    assert problem.hv_fraction([kept]) == pytest.approx(0.25 * 0.75)
    assert search_quality._with_cost(_problem(cost=False), {"x": 0.25}, metrics) is metrics


def test_anytime_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are the median run's seconds at each trial count; each run scored at each."""
    problem = _problem()
    monkeypatch.setattr(search_quality, "_problem", lambda key: problem)
    monkeypatch.setattr(search_quality, "ANYTIME_TRIALS", (1, 2, 3))
    args = argparse.Namespace(methods=["cheap", "dear"], seed_list=[0], trials=3)
    cheap = [{**m, _problems.COST: 1.0} for m in (A, B, C)]
    dear = [{**m, _problems.COST: 100.0} for m in (C, B, A)]
    done = {("toy", "cheap", 0): (cheap, 0.0), ("toy", "dear", 0): (dear, 0.0)}
    at = search_quality.anytime("toy", args, done)
    assert at is not None
    budgets, hv = at
    # medians of (1, 100), (2, 200), (3, 300)
    assert budgets == [(1, 50.5), (2, 101.0), (3, 151.5)]
    assert hv["cheap"][50.5] == [(pytest.approx(1.1), 3)]
    assert hv["dear"][50.5] == [(0.0, 0)]
    assert hv["dear"][101.0] == [(pytest.approx(0.2), 1)]  # C alone: 2.0 * 0.1
    assert hv["dear"][151.5] == [(pytest.approx(0.2), 1)]
    monkeypatch.setattr(search_quality, "_problem", lambda key: _problem(cost=False))
    assert search_quality.anytime("toy", args, done) is None


# bench/tutorial_search.py: the tutorial's thresholds are val_acc 0.94 (max), num_params 80000 (min)
P = {"val_acc": 0.95, "num_params": 70000.0}  # hypervolume 0.01 * 10000 = 100
Q = {"val_acc": 0.96, "num_params": 60000.0}  # dominates P: 0.02 * 20000 = 400


def test_tutorial_trial_times_in_end_order(tmp_path: Path) -> None:
    for idx, start, end in [(0, 100.0, 160.0), (1, 100.0, 130.0), (2, 110.0, 150.0)]:
        marks = tmp_path / f"trial-{idx}" / ".nasop"
        marks.mkdir(parents=True)
        for name, t in (("pid", start), ("exit", end)):
            (marks / name).write_text("")
            os.utime(marks / name, (t, t))
    (tmp_path / "trial-3" / ".nasop").mkdir(parents=True)  # still running: no exit marker
    times = tutorial_search.trial_times(tmp_path)
    assert times == {0: (60.0, 160.0), 1: (30.0, 130.0), 2: (40.0, 150.0)}
    outcomes = {0: Q, 1: None, 2: P}  # trial 1 stopped early
    assert tutorial_search.anytime_trials(times, outcomes) == [(30.0, None), (40.0, P), (60.0, Q)]


def test_tutorial_anytime_hv() -> None:
    trials = [(30.0, None), (40.0, P), (60.0, Q)]
    assert tutorial_search.anytime_hv(trials, 29.0) == (0.0, 0)
    assert tutorial_search.anytime_hv(trials, 30.0) == (0.0, 1)  # a stopped trial: seconds only
    hv, n = tutorial_search.anytime_hv(trials, 70.0)
    assert (hv, n) == (pytest.approx(100.0), 2)
    hv, n = tutorial_search.anytime_hv(trials, 1e9)
    assert (hv, n) == (pytest.approx(400.0), 3)


def test_tutorial_anytime_table() -> None:
    rows = [
        {"mode": "none", "trainer_s": 100.0, "anytime": [(50.0, P), (50.0, Q)]},
        {"mode": "none", "trainer_s": 300.0, "anytime": [(300.0, Q)]},
        {"mode": "es", "trainer_s": 60.0, "anytime": [(10.0, None), (50.0, Q)]},
        {"mode": "packed", "trainer_s": 10.0, "anytime": []},  # no per-trial records: left out
    ]
    budgets, hv = tutorial_search.anytime_table(rows, fractions=(0.25, 1.0))
    assert budgets == [50.0, 200.0]  # fractions of mode none's mean trainer seconds (200)
    assert set(hv) == {"none", "es"}
    assert hv["none"][50.0] == [(pytest.approx(100.0), 1), (0.0, 0)]
    assert hv["none"][200.0] == [(pytest.approx(400.0), 2), (0.0, 0)]
    assert hv["es"][50.0] == [(0.0, 1)]
    assert hv["es"][200.0] == [(pytest.approx(400.0), 2)]


def test_tutorial_seconds_to_reach() -> None:
    trials = [(30.0, None), (40.0, P), (60.0, Q)]
    assert tutorial_search.seconds_to_reach(trials, 50.0) == 70.0  # P alone: 100
    assert tutorial_search.seconds_to_reach(trials, 400.0) == 130.0  # Q: 400
    assert tutorial_search.seconds_to_reach(trials, 401.0) is None


def test_tutorial_first_trials_counts_the_first_n_by_index() -> None:
    # trials 0..2 ended in the order 1, 2, 0, 3; trial 3 (index >= n) is left out
    row = {
        "mode": "es",
        "trainer_s": 160.0,
        "hypervolume": 400.0,
        "trials": 4,
        "early_stopped": 2,
        "stopped": [1, 3],
        "order": [1, 2, 0, 3],
        "anytime": [(30.0, None), (40.0, P), (60.0, Q), (30.0, None)],
        "per_trial": {
            "0": [1.0, 3, 0.0],
            "1": [1.0, 1, 20.0],
            "2": [1.0, 3, 0.0],
            "3": [1.0, 1, 9.0],
        },
    }
    first = tutorial_search.first_trials(row, 3)
    assert first["trainer_s"] == 130.0
    assert first["hypervolume"] == pytest.approx(400.0)
    assert (first["trials"], first["early_stopped"]) == (3, 1)
    assert (first["startup_s"], first["epochs"], first["unrun_s"]) == (3.0, 7, 20.0)
    assert first["order"] == [1, 2, 0]
    assert tutorial_search.first_trials(row, 4) is row  # nothing to cut
    two = tutorial_search.first_trials(row, 2)  # trials 1 (stopped) and 0 (Q)
    assert (two["order"], two["trainer_s"]) == ([1, 0], 90.0)
    assert two["hypervolume"] == pytest.approx(400.0)


def test_tutorial_paired_hv_interval() -> None:
    rows = [
        {"mode": "none", "seed": 0, "hypervolume": 100.0},
        {"mode": "none", "seed": 1, "hypervolume": 300.0},
        {"mode": "es", "seed": 0, "hypervolume": 90.0},
        {"mode": "es", "seed": 1, "hypervolume": 330.0},
        {"mode": "es", "seed": 2, "hypervolume": 1.0},  # no pair: left out
    ]
    diffs, low, high = tutorial_search.paired_hv(rows, "es")
    assert diffs == [pytest.approx(-0.05), pytest.approx(0.15)]  # of none's mean, 200
    # mean 0.05, sd 0.1414, 1 degree of freedom: 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert (low, high) == (pytest.approx(0.05 - 1.2706, abs=1e-4), pytest.approx(1.3206, abs=1e-4))
    assert tutorial_search.paired_hv(rows[:3], "es") is None  # one pair: no interval
