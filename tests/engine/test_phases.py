"""The phase rules, one branch per test: plain values in, a phase and its message out."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from nasop import spec
from nasop.engine.phases import Counts, Decision, apply, decide, out_of_time
from nasop.engine.state import SearchState
from stubs import manifest

NOW = 1_000_000.0


def _spec(**overrides: Any) -> spec.NASExperimentSpec:
    budget = {"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 2, **overrides.pop("budget", {})}
    return spec.parse_manifest(manifest("phases", budget=budget, **overrides)).spec


def _counts(**kw: Any) -> Counts:
    return Counts(
        **{
            "running": 0,
            "user_failures": 0,
            "completed_here": 0,
            "budget_left": 0,
            "failure_summary": "",
            **kw,
        }
    )


def _state(**kw: Any) -> SearchState:
    return SearchState(**{"start_epoch": NOW - 10, **kw})


def test_trials_left_to_run_keep_the_search_running() -> None:
    d = decide(_state(), _counts(running=2, budget_left=4), _spec(), NOW)
    assert (d.phase, d.message, d.abandon_running) == (spec.Phase.RUNNING, "", False)


def test_the_budget_spent_with_nothing_running_succeeds() -> None:
    d = decide(_state(), _counts(completed_here=6), _spec(), NOW)
    assert (d.phase, d.message) == (spec.Phase.SUCCEEDED, "all 6 trials done")


def test_running_trials_and_retries_hold_the_end_back() -> None:
    assert decide(_state(), _counts(running=1), _spec(), NOW).phase is spec.Phase.RUNNING
    assert decide(_state(requeue=[3]), _counts(), _spec(), NOW).phase is spec.Phase.RUNNING


def test_too_many_failures_fail_the_search_and_abandon_running_trials() -> None:
    d = decide(
        _state(),
        _counts(
            running=1,
            user_failures=3,
            budget_left=3,
            failure_summary="most common reason (3 of 3): boom",
        ),
        _spec(),
        NOW,
    )
    assert d.phase is spec.Phase.FAILED and d.abandon_running
    assert d.message == (
        "3 trials failed, more than budget.maxFailedTrials=2; most common reason (3 of 3): boom"
    )


def test_a_finished_search_where_no_trial_completed_fails() -> None:
    d = decide(
        _state(),
        _counts(user_failures=1, failure_summary="most common reason (1 of 1): x"),
        _spec(),
        NOW,
    )
    assert d.phase is spec.Phase.FAILED and d.message.startswith("no trial completed (1 failed)")


def test_endless_infrastructure_failures_fail_once_nothing_runs() -> None:
    state = _state(infra=list(range(13)), reasons={12: "image pull failed"})
    assert (
        decide(state, _counts(running=1, budget_left=6), _spec(), NOW).phase is spec.Phase.RUNNING
    )
    d = decide(state, _counts(budget_left=6), _spec(), NOW)
    assert d.phase is spec.Phase.FAILED
    assert (
        d.message == "13 trials could not run for infrastructure reasons; last: image pull failed"
    )


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            _state(converged="hypervolume improved less than 1% in 5 trials"),
            "hypervolume improved less than 1% in 5 trials",
        ),
        (_state(exhausted=True), "search space exhausted"),
        (_state(start_epoch=NOW - 7200), "budget.maxDuration reached"),
    ],
)
def test_why_a_search_ended_early(state: SearchState, message: str) -> None:
    d = decide(
        state, _counts(budget_left=3, completed_here=3), _spec(budget={"maxDuration": "1h"}), NOW
    )
    assert (d.phase, d.message) == (spec.Phase.SUCCEEDED, message)


def test_suspend_holds_a_search_with_budget_left() -> None:
    d = decide(_state(), _counts(budget_left=4), _spec(suspend=True), NOW)
    assert (d.phase, d.message) == (
        spec.Phase.SUSPENDED,
        "spec.suspend is true: no new trials are launched",
    )


def test_max_duration_counts_from_the_start() -> None:
    one_hour = _spec(budget={"maxDuration": "1h"})
    assert not out_of_time(_state(), one_hour, NOW)
    assert out_of_time(SearchState(start_epoch=NOW - 3601), one_hour, NOW)
    assert not out_of_time(SearchState(start_epoch=NOW - 10**9), _spec(), NOW)


def test_apply_records_the_end_once_with_one_event() -> None:
    state, events = _state(), []
    done = decide(state, _counts(completed_here=6), _spec(), NOW)
    assert apply(state, done, events) is True
    assert state.phase is spec.Phase.SUCCEEDED and state.completion_time
    assert [(e.reason, e.message, e.warning) for e in events] == [
        ("SearchSucceeded", "all 6 trials done", False)
    ]
    assert apply(state, done, events) is False and len(events) == 1  # nothing new


def test_apply_a_new_message_in_the_same_phase_changes_the_status_without_an_event() -> None:
    state, events = _state(phase=spec.Phase.SUSPENDED), []
    assert apply(state, Decision(spec.Phase.SUSPENDED, "why not"), events) is True
    assert state.message == "why not" and events == [] and state.completion_time is None


def test_the_phase_rules_load_without_ax() -> None:
    code = (
        "import sys, nasop.engine.phases\n"
        "loaded = sorted(m for m in sys.modules if m == 'ax' or m.startswith(('ax.', 'botorch')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
