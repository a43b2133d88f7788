"""Search features end to end, in process: real Ax, real TorchX local_cwd processes running the
fake trainer (tests/fake_trainer.py), real TensorBoard files, the file store.

Early stopping must kill the losing trial's process (and the Pareto rule stop only dominated
trials); a constraint keeps violating trials off the
front; warm start reuses an earlier search's trials without running them; a stalled hypervolume
ends the search; a trial interrupted by the infrastructure is retried and not counted as a failure.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine.search import Event, Search
from nasop.local.session import LocalPaths, local_runner, local_store
from nasop.trials import local_markers
from stubs import BASE, manifest

pytestmark = pytest.mark.slow

SPACE = [p for p in BASE["spec"]["searchSpace"] if p["name"] != "epochs"]


def _space(epochs: int, **bounds: list[int]) -> list[dict[str, Any]]:
    out = [dict(p, bounds=bounds[p["name"]]) if p["name"] in bounds else dict(p) for p in SPACE]
    return [*out, {"name": "epochs", "type": "fixed", "value": epochs}]


def _open(tmp_path: Any, data: dict[str, Any]) -> Search:
    m = spec.parse_manifest(data)
    paths = LocalPaths(str(tmp_path / "state"))
    return Search.open(m.spec, m.name, local_runner(m, paths), local_store(paths, None))


def _run(search: Search, timeout: float = 240) -> list[Event]:
    events: list[Event] = []
    deadline = time.time() + timeout
    try:
        while not search.finished:
            assert time.time() < deadline, f"search did not finish: {search.status().dump()}"
            events += search.tick().events
            time.sleep(0.1)
    finally:
        search.close()
    return events


def _launched(events: list[Event]) -> list[int]:
    return [e.trial for e in events if e.reason == "TrialLaunched"]


def _val_acc_steps(log_dir: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir)
    acc.Reload()
    return [ev.step for ev in acc.Scalars("val_acc")]


def _stopping_search(
    tmp_path: Any,
    name: str,
    rule: dict[str, Any],
    *,
    parallelism: int,
    seed: int,
    sleep: float,
    trials: int = 8,
) -> Search:
    """`trials` Sobol trials of 8 epochs (`sleep` s each) under one val_acc rule judged from
    epoch 1."""
    return _open(
        tmp_path,
        manifest(
            name,
            searchSpace=_space(8),
            budget={"maxTrials": trials, "parallelism": parallelism, "maxFailedTrials": 0},
            optimizer={"method": "sobol", "seed": seed},
            earlyStopping={"metric": "val_acc", "minProgression": 1, "minCurves": 1, **rule},
            trial={"command": manifest()["spec"]["trial"]["command"], "args": [f"--sleep={sleep}"]},
        ),
    )


def _assert_killed(log_dir: str) -> None:
    """The trial's process was killed: the wrapper recorded a signal, and no pid it ran is alive."""
    assert local_markers.exit_code(log_dir) in (-signal.SIGTERM, 128 + signal.SIGTERM)
    pids = json.loads(Path(local_markers.marker_dir(log_dir), "pid").read_text())
    assert not any(local_markers._alive(p) for p in pids.values())


def test_early_stopping_kills_the_losing_trials_process(tmp_path: Any) -> None:
    search = _stopping_search(tmp_path, "es", {"threshold": 0.65}, parallelism=3, seed=3, sleep=0.5)
    events = _run(search)
    stopped = search.trials_in(TrialStatus.EARLY_STOPPED)
    completed = search.trials_in(TrialStatus.COMPLETED)
    assert stopped and completed and search.phase is spec.Phase.SUCCEEDED
    assert {e.trial for e in events if e.reason == "TrialEarlyStopped"} == {
        t.index for t in stopped
    }
    status = search.status()
    assert status.trials.early_stopped == len(stopped)
    for trial in stopped:
        log_dir = trial.run_metadata["tb_log_dir"]
        _assert_killed(log_dir)
        steps = _val_acc_steps(log_dir)
        assert steps and max(steps) < 7, f"trial {trial.index} ran to the end: {steps}"
        assert "val_acc worse than 0.65" in search.state.reasons[trial.index]
        assert trial.index not in {p.trial for p in status.pareto_front}
    for trial in completed:
        assert max(_val_acc_steps(trial.run_metadata["tb_log_dir"])) == 7
    _assert_report_curves(search, stopped, completed)


def _assert_report_curves(search: Search, stopped: list[Any], completed: list[Any]) -> None:
    """The report's learning curves are the trials' TensorBoard curves; stopped ones cut."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nasop.report import history as report_history

    fig = report_history.learning_curve_figures(search)[0]
    traces = {t.meta["trial"]: t for t in fig.data}
    assert set(traces) == {t.index for t in stopped + completed}
    for trial in stopped + completed:
        acc = EventAccumulator(trial.run_metadata["tb_log_dir"])
        acc.Reload()
        logged = {ev.step: ev.value for ev in acc.Scalars("val_acc")}
        t = traces[trial.index]
        assert set(t.x) <= set(logged) and list(t.y) == pytest.approx([logged[x] for x in t.x])
        if trial in stopped:
            assert max(t.x) < 7 and t.line.dash == "dash" and list(t.marker.symbol)[-1] == "x"
        else:
            assert list(t.x) == list(range(8)) and t.line.dash is None


def _fake_final(p: dict[str, Any]) -> tuple[float, float]:
    """The fake trainer's final (val_acc, num_params); val_acc at epoch e is
    final * (1 - 0.5 ** (e + 1))."""
    h1, h2 = p["hidden_size_1"], p["hidden_size_2"]
    acc = 1 - 0.6 / (1 + h1 * h2 / 64) ** 0.5 - 0.05 * abs(math.log10(p["learning_rate"]) + 2.5)
    return acc, 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10


def test_early_stopping_acts_while_a_generation_runs(tmp_path: Any) -> None:
    """A generation step takes seconds on a loaded machine, longer than a small model's epoch:
    the loop stops a losing trial while a (held) generation is in flight, and saves only once
    that generation lands, since the worker is updating the strategy meanwhile."""
    search = _stopping_search(
        tmp_path, "es-gen", {"threshold": 0.65}, parallelism=3, seed=3, sleep=1.0
    )
    try:
        deadline = time.time() + 120
        while True:  # Ax's rules judge once a trial has completed: wait for a loser after that
            assert time.time() < deadline, "no losing trial ran after a completed one"
            search.tick()
            running = search.trials_in(TrialStatus.RUNNING)
            losers = [
                t.index for t in running if 0.75 * _fake_final(t.arm.parameters)[0] < 0.65
            ]  # epoch 1
            if (
                search.trials_in(TrialStatus.COMPLETED)
                and losers
                and search.generation._future is None
            ):
                break
            time.sleep(0.05)
        held: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        search.generation._future = held  # a generation step that has not landed

        def stored_status(index: int) -> TrialStatus:
            snapshot = search.store.load(name=search.name)
            return snapshot.experiment.trials[index].status

        stopped: list[int] = []
        while not stopped:
            assert time.time() < deadline, f"trials {losers} were not stopped while generating"
            report = search.tick()
            assert report.generating and not held.done()
            stopped = [e.trial for e in report.events if e.reason == "TrialEarlyStopped"]
            time.sleep(0.1)
        assert set(stopped) <= set(losers)
        # not saved while the worker could be writing the strategy
        assert stored_status(stopped[0]) is TrialStatus.RUNNING
        trial = search.experiment.trials[stopped[0]]
        assert trial.status is TrialStatus.EARLY_STOPPED
        log_dir = trial.run_metadata["tb_log_dir"]
        while local_markers.exit_code(log_dir) is None:  # the wrapper records the signal
            assert time.time() < deadline
            time.sleep(0.05)
        _assert_killed(log_dir)
        assert max(_val_acc_steps(log_dir)) < 7
        held.set_result([])
        search.tick()  # the generation lands: saved now, with the stop in it
        assert (
            stored_status(stopped[0]) is TrialStatus.EARLY_STOPPED
            and search.generation._future is not held
        )
    finally:
        for t in search.trials_in(TrialStatus.RUNNING):
            search.runner.stop(t)
        search.close()


def test_pareto_rule_stops_only_dominated_trials(tmp_path: Any) -> None:
    """The fake trainer's accuracy at every epoch is its final accuracy times the same factor,
    so a trial dominated at one epoch is dominated at the end: every trial the rule stops must
    be dominated by another trial's final result, and the smallest model is never stopped."""
    search = _stopping_search(
        tmp_path, "pareto", {"dominatedBy": 1}, parallelism=2, seed=0, sleep=0.4
    )
    _run(search)
    stopped = {t.index for t in search.trials_in(TrialStatus.EARLY_STOPPED)}
    assert stopped and search.phase is spec.Phase.SUCCEEDED
    num_params: dict[int, float] = {}
    final: dict[int, float] = {}
    for t in search.experiment.trials.values():  # what each trial would have reached
        final[t.index], num_params[t.index] = _fake_final(t.arm.parameters)
    for i in stopped:
        assert any(
            num_params[j] <= num_params[i] and final[j] >= final[i] for j in final if j != i
        ), f"trial {i} was not dominated"
        assert "dominated by 1 trial on every objective" in search.state.reasons[i]
        _assert_killed(search.experiment.trials[i].run_metadata["tb_log_dir"])
    assert min(num_params, key=num_params.get) not in stopped


def test_gain_rule_stops_trials_once_the_search_has_a_price(tmp_path: Any) -> None:
    """The gain rule judges nothing before 9 trials have completed (the price of a trainer
    second is what the last 8 added); from then on it stops trials whose expected hypervolume
    per remaining second is below the ratio times that price, kills their processes, and says
    why with its numbers. The seconds come from the search's own start times."""
    search = _stopping_search(
        tmp_path, "gain", {"gainRatio": 4}, parallelism=2, seed=1, sleep=0.3, trials=16
    )
    events = _run(search)
    stopped = {t.index for t in search.trials_in(TrialStatus.EARLY_STOPPED)}
    assert stopped and search.phase is spec.Phase.SUCCEEDED
    completed = 0
    for e in events:
        completed += e.reason == "TrialCompleted"
        if e.reason == "TrialEarlyStopped":
            assert completed >= 9, f"trial {e.trial} stopped after {completed} completions"
    front = {p.trial for p in search.status().pareto_front}
    for i in stopped:
        why = search.state.reasons[i]
        assert why.startswith("expected hypervolume gain"), why
        assert "the last 8 completed trials' gain per trainer second" in why
        assert i not in front
        _assert_killed(search.experiment.trials[i].run_metadata["tb_log_dir"])


def test_outcome_constraint_keeps_violating_trials_off_the_front(tmp_path: Any) -> None:
    search = _open(
        tmp_path,
        manifest(
            "constrained",
            outcomeConstraints=["latency_ms <= 1.2"],
            budget={"maxTrials": 8, "parallelism": 4, "maxFailedTrials": 0},
            optimizer={"method": "sobol", "seed": 0},
        ),
    )
    _run(search)
    obs = search.observations()
    violating = [o.trial for o in obs if o.metrics["latency_ms"] > 1.2]
    front = search.status().pareto_front
    assert len(obs) == 8 and violating and front
    assert all(p.metrics["latency_ms"] <= 1.2 for p in front)
    assert not set(violating) & {p.trial for p in front}


def test_warm_start_reuses_compatible_trials_and_does_not_run_them(tmp_path: Any) -> None:
    narrow = _space(2, hidden_size_1=[16, 48])
    source = _open(
        tmp_path,
        manifest(
            "ws-src",
            searchSpace=narrow,
            budget={"maxTrials": 4, "parallelism": 4},
            optimizer={"method": "sobol", "seed": 0},
        ),
    )
    _run(source)
    src_values = {tuple(sorted(o.parameters.items())): o.metrics for o in source.observations()}
    assert len(src_values) == 4

    wide = _space(2, hidden_size_1=[16, 128])
    target = _open(
        tmp_path,
        manifest(
            "ws-dst",
            searchSpace=wide,
            budget={"maxTrials": 2, "parallelism": 2},
            optimizer={"method": "sobol", "seed": 1},
            warmStart=[{"experiment": "ws-src"}],
        ),
    )
    events = _run(target)
    st = target.status()
    assert st.trials.warm_started == 4 and st.trials.completed == 6 and st.trials.total == 6
    assert len(_launched(events)) == 2  # maxTrials counts only trials run here
    assert any(e.reason == "WarmStarted" and "reused 4 trials" in e.message for e in events)
    warm = set(target.state.warm)
    assert warm == {0, 1, 2, 3} and not set(_launched(events)) & warm
    for o in target.observations():
        if o.trial in warm:  # same parameters, same metrics, nothing re-run
            assert src_values[tuple(sorted(o.parameters.items()))] == pytest.approx(
                o.metrics, rel=1e-9
            )

    # a state file works as a source too; trials outside the new space are skipped, not copied
    far = _space(2, hidden_size_1=[64, 128])
    third = _open(
        tmp_path,
        manifest(
            "ws-far",
            searchSpace=far,
            budget={"maxTrials": 1, "parallelism": 1},
            optimizer={"method": "sobol", "seed": 2},
            warmStart=[{"stateFile": str(tmp_path / "state" / "state" / "ws-src.json")}],
        ),
    )
    events = _run(third)
    summary = next(e.message for e in events if e.reason == "WarmStarted")
    assert summary == "warm start: reused 0 trials; skipped 4 outside the search space"
    assert third.status().trials.warm_started == 0


def test_warm_start_from_a_missing_experiment_names_the_field(tmp_path: Any) -> None:
    from nasop import errors

    with pytest.raises(errors.SpecError, match=r"spec.warmStart\[0\]: 'nope' not found"):
        _open(tmp_path, manifest("ws-missing", warmStart=[{"experiment": "nope"}]))


def test_stalled_hypervolume_ends_the_search_with_the_reason(tmp_path: Any) -> None:
    search = _open(
        tmp_path,
        manifest(
            "stall",
            budget={
                "maxTrials": 40,
                "parallelism": 2,
                "stopWhenImprovementBelow": 1.0,
                "improvementWindow": 2,
            },
            optimizer={"method": "sobol", "seed": 0, "initialTrials": 4},
        ),
    )
    events = _run(search)
    st = search.status()
    assert st.phase is spec.Phase.SUCCEEDED and st.message.startswith("converged:")
    assert 6 <= st.trials.completed < 40
    assert any(e.reason == "SearchConverged" for e in events)


def test_interrupted_trial_is_retried_and_not_counted_as_a_failure(tmp_path: Any) -> None:
    data = manifest(
        "infra",
        budget={"maxTrials": 3, "parallelism": 2, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 0},
        trial={"command": manifest()["spec"]["trial"]["command"], "args": ["--sleep=1.5"]},
    )
    first = _open(tmp_path, data)
    deadline = time.time() + 60
    victim = None
    while victim is None:
        assert time.time() < deadline
        first.tick()
        for t in first.trials_in(TrialStatus.RUNNING):
            pid_file = os.path.join(local_markers.marker_dir(t.run_metadata["tb_log_dir"]), "pid")
            if os.path.exists(pid_file):
                victim = t
                break
        time.sleep(0.1)
    pids = json.loads(Path(pid_file).read_text())
    for pid in (pids["wrapper"], pids["child"]):  # the node died: no exit code is written
        os.kill(pid, signal.SIGKILL)
    first.generation.close()  # the process driving the search dies without a word

    second = _open(tmp_path, data)  # a new process: it finds orphans, one of them interrupted
    events = _run(second)
    st = second.status()
    assert st.phase is spec.Phase.SUCCEEDED, st.message
    assert victim.index in second.state.infra
    assert "interrupted" in second.state.reasons[victim.index]
    arm = victim.arm.parameters
    rerun = [t for t in second.trials_in(TrialStatus.COMPLETED) if t.arm.parameters == arm]
    assert rerun and rerun[0].index > victim.index
    assert any(e.reason == "TrialInterrupted" and "will be retried" in e.message for e in events)
    assert st.trials.completed == 3  # the budget is three trials that ran, the retry included
