"""The search benchmarks' anytime scores (bench/_problems.py, bench/search_quality.py): the
hypervolume of the trials a run finished within a budget of trainer seconds, summed in trial
order."""

from __future__ import annotations

import argparse
import os
import sys

import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
)

import _problems
import search_quality


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
