"""Launched is not started: the waiting rules with an injected clock (plain values, no Ax).

The observations are what the runner returns for a pending cluster trial (`pending=True` and
the reason trials/waiting.py read), a started one (`pending=False`), or one it could not look at
(`pending=None`).
"""

from __future__ import annotations

from typing import Any

from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine import conditions, phases, starting
from nasop.engine.events import TickReport
from nasop.engine.state import SearchState
from nasop.trials.runner import TrialObservation
from stubs import manifest

T0 = 1_000_000.0
TIMEOUT = 600.0  # stall after 300 s
CLAIM = 'Unschedulable: 0/1 nodes are available: persistentvolumeclaim "nasop-logs" not found'


def waits(reason: str = CLAIM) -> TrialObservation:
    return TrialObservation(TrialStatus.RUNNING, reason, pending=True)


RUNS = TrialObservation(TrialStatus.RUNNING)


def _track(state: SearchState, index: int, obs: TrialObservation, now: float) -> Any:
    report = TickReport()
    late = starting.track(state, index, obs, now, TIMEOUT, report)
    return late, report


def test_a_reason_is_recorded_after_the_grace_period_with_one_event_per_kind() -> None:
    state = SearchState()
    late, report = _track(state, 0, waits(), T0)
    assert late is None and not report.events and not state.waits  # within the grace period
    assert state.pending_since == {0: T0}
    events = []
    for tick in range(1, 40):  # every 2 s, the reason flips as a kubelet's back-off does
        reason = (
            CLAIM
            if tick < 10
            else (
                'ErrImagePull: failed to pull "x"' if tick % 2 else 'ImagePullBackOff: back-off "x"'
            )
        )
        late, report = _track(state, 0, waits(reason), T0 + 2 * tick)
        assert late is None
        events += report.events
    assert [e.reason for e in events] == ["TrialWaiting", "TrialWaiting"]
    assert "persistentvolumeclaim" in events[0].message and events[0].warning
    assert "ImagePullBackOff" in events[1].message and events[1].trial == 0
    assert state.told == {0: ["Unschedulable", "ErrImagePull"]}
    assert state.waits[0].startswith("ImagePullBackOff")  # not rewritten on every flip


def test_a_container_being_created_is_said_but_is_no_event() -> None:
    state = SearchState()
    _track(state, 0, waits("ContainerCreating"), T0)
    late, report = _track(state, 0, waits("ContainerCreating"), T0 + 30)
    assert late is None and report.changed and not report.events
    assert state.waits == {0: "ContainerCreating"}


def test_a_started_trial_forgets_its_wait_and_is_never_pending_again() -> None:
    state = SearchState()
    _track(state, 0, waits(), T0)
    _track(state, 0, waits(), T0 + 20)
    late, report = _track(state, 0, RUNS, T0 + 30)
    assert late is None and report.changed
    assert state.started == {0: T0 + 30} and not state.waits and not state.told
    late, report = _track(state, 0, waits(), T0 + TIMEOUT * 3)  # a restart: still started
    assert late is None and not report.changed and state.started == {0: T0 + 30}


def test_an_unknown_observation_changes_nothing() -> None:
    state = SearchState()
    late, report = _track(state, 0, TrialObservation(TrialStatus.RUNNING, pending=None), T0)
    assert late is None and not report.changed and state == SearchState()


def test_a_trial_that_waits_past_the_start_timeout_fails_with_its_reason() -> None:
    state = SearchState()
    _track(state, 3, waits(), T0)
    assert _track(state, 3, waits(), T0 + TIMEOUT - 1)[0] is None
    late, _ = _track(state, 3, waits(), T0 + TIMEOUT)
    assert late == ("did not start within spec.trial.startTimeout (10m): " + CLAIM)


def test_stalled_only_when_trials_wait_none_runs_and_none_started_for_a_while() -> None:
    state = SearchState(pending_since={0: T0, 1: T0 + 5}, waits={0: CLAIM, 1: CLAIM})
    assert starting.stall_after(TIMEOUT) == 300
    assert starting.stall_after(40) == 20
    assert starting.stalled(state, [0, 1], 0, T0 + 299, TIMEOUT) == ""
    assert starting.stalled(state, [0, 1], 1, T0 + 400, TIMEOUT) == ""  # one runs: progress
    assert starting.stalled(state, [], 0, T0 + 400, TIMEOUT) == ""
    why = starting.stalled(state, [0, 1], 0, T0 + 300, TIMEOUT)
    assert why.startswith("no trial has started for more than 5m; 2 trials wait: " + CLAIM)
    assert "To fix: create what the trial pods need" in why
    assert "spec.trial.startTimeout (10m)" in why
    # a trial started after trial 0 was launched: the clock counts from the later launch
    state.started = {7: T0 + 2}
    assert starting.stalled(state, [0, 1], 0, T0 + 300, TIMEOUT) == ""
    assert starting.stalled(state, [0, 1], 0, T0 + 305, TIMEOUT) != ""


def test_trials_that_time_out_and_are_replaced_keep_the_search_stalled() -> None:
    state = SearchState(pending_since={0: T0, 1: T0 + 600}, unstarted=[0])
    assert starting.stalled(state, [1], 0, T0 + 601, TIMEOUT) != ""


def test_update_stall_says_changed_only_when_the_message_changes() -> None:
    state = SearchState(pending_since={0: T0}, waits={0: CLAIM})
    assert not starting.update_stall(state, [0], 0, T0 + 10, TIMEOUT)
    assert starting.update_stall(state, [0], 0, T0 + 300, TIMEOUT) and state.stalled
    assert not starting.update_stall(state, [0], 0, T0 + 360, TIMEOUT)
    state.started[0] = T0 + 400  # it started: cleared by itself
    assert starting.update_stall(state, [], 1, T0 + 400, TIMEOUT) and state.stalled == ""


def test_the_summary_names_the_most_common_reason() -> None:
    state = SearchState(waits={0: CLAIM, 1: CLAIM, 2: "ErrImagePull: x"})
    assert starting.summary(state, [0, 1, 2]) == CLAIM + " (and 1 other reason)"
    assert starting.summary(state, [5]) == ""


def test_conditions_while_trials_wait_and_when_stalled() -> None:
    waiting_ = {
        c.type: c
        for c in conditions.from_phase(spec.Phase.RUNNING, running=3, pending=2, waiting=CLAIM)
    }
    assert waiting_["Reconciling"].status == "True"
    assert waiting_["Reconciling"].message == (
        f"1 trial running, 2 waiting: {CLAIM}; more are generated and launched"
    )
    assert waiting_["Stalled"].status == "False"
    stuck = {
        c.type: c
        for c in conditions.from_phase(
            spec.Phase.RUNNING, running=2, pending=2, waiting=CLAIM, stalled="no trial has started"
        )
    }
    assert (stuck["Reconciling"].status, stuck["Reconciling"].reason) == (
        "False",
        "TrialsCannotStart",
    )
    assert (stuck["Stalled"].status, stuck["Stalled"].reason) == ("True", "TrialsCannotStart")
    assert stuck["Stalled"].message == "no trial has started"
    assert stuck["Ready"].status == "False"


def test_no_trial_ever_starting_fails_the_search_after_two_rounds() -> None:
    s = spec.parse_manifest(manifest("p", budget={"maxTrials": 10, "parallelism": 2})).spec
    counts = phases.Counts(running=2, user_failures=0, completed_here=0, budget_left=10)
    state = SearchState(start_epoch=T0, unstarted=[0, 1, 2], reasons={3: "did not start: x"})
    assert phases.decide(state, counts, s, T0).phase is spec.Phase.RUNNING
    state.unstarted.append(3)
    d = phases.decide(state, counts, s, T0)
    assert d.phase is spec.Phase.FAILED and d.abandon_running
    assert "no trial could start: 4 trials" in d.message and "did not start: x" in d.message
    state.started = {5: T0}  # one did start once: the cluster can run trials
    assert phases.decide(state, counts, s, T0).phase is spec.Phase.RUNNING
