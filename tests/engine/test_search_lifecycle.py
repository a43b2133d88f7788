"""Proposals that arrive after the search stopped launching are dropped, not launched."""

from __future__ import annotations

from typing import Any

import pytest

from nasop import spec
from nasop.engine.search import Search
from nasop.trials.runner import TorchXTrialRunner
from stubs import manifest
from synthetic_trials import search_with_trials


def _search(tmp_path: Any, **overrides: Any) -> Search:
    return search_with_trials(
        manifest("lifecycle", optimizer={"method": "sobol", "seed": 0}, **overrides), str(tmp_path)
    )


def _generation_lands(search: Search) -> None:
    assert search.generation.running
    search.generation.wait()


@pytest.mark.parametrize("change", ["suspend", "maxTrials"])
def test_generation_in_flight_when_launching_stops_launches_nothing(
    tmp_path: Any, change: str
) -> None:
    search = _search(tmp_path, budget={"maxTrials": 6, "parallelism": 2})
    try:
        assert search.tick().generating  # two proposals are being generated
        data = search.spec.dump()
        if change == "suspend":
            data["suspend"] = True
        else:
            data["budget"]["maxTrials"] = 1  # room for one trial only
        search.update_spec(spec.parse_spec(data))
        _generation_lands(search)
        report = search.tick()  # a launch here is a real fake-trainer process
        launched = [e.trial for e in report.events if e.reason == "TrialLaunched"]
        if change == "suspend":
            assert not search.experiment.trials and not launched
            assert search.phase is spec.Phase.SUSPENDED
        else:
            assert len(search.experiment.trials) == 1 and launched == [0]
    finally:
        for t in search.experiment.trials.values():
            search.runner.stop(t)
        search.close()


def test_the_runner_knows_when_budget_max_duration_ends(tmp_path: Any) -> None:
    """A Job's activeDeadlineSeconds is the time left: the deadline follows spec changes."""
    import math

    search = _search(tmp_path, budget={"maxTrials": 4, "parallelism": 2, "maxDuration": "1h"})
    try:
        start = search.state.start_epoch
        assert search.runner.deadline == start + 3600
        search.update_spec(
            search.spec.model_copy(
                update={"budget": search.spec.budget.model_copy(update={"max_duration": "2h"})}
            )
        )
        assert search.runner.deadline == start + 7200
        search.update_spec(
            search.spec.model_copy(
                update={"budget": search.spec.budget.model_copy(update={"max_duration": None})}
            )
        )
        assert search.runner.deadline == math.inf
    finally:
        search.close()


def test_the_search_owns_its_runner_close_stops_the_fork_server(tmp_path: Any) -> None:
    m = spec.parse_manifest(manifest("owner", optimizer={"method": "sobol", "seed": 0}))
    runner = TorchXTrialRunner(
        scheduler="local_cwd",
        template=m.spec.trial.dump(),
        log_root=str(tmp_path),
        experiment_name=m.name,
        preload=["json"],
    )
    search = Search.open(m.spec, m.name, runner, store=None)
    assert runner.fork_server is not None and runner.fork_server.env()  # started on first use
    process = runner.fork_server._proc
    assert process is not None and process.poll() is None
    search.close()
    assert process.wait(timeout=10) is not None and runner.fork_server._proc is None


def test_a_batch_is_saved_once_as_candidates_before_any_of_it_is_submitted(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One state write records every trial of a batch (a crash before, between or after the
    submits leaves CANDIDATEs to adopt or submit), not one write per trial."""
    from ax.core.base_trial import TrialStatus

    search = _search(tmp_path, budget={"maxTrials": 3, "parallelism": 3})
    saved: list[dict[int, TrialStatus]] = []
    submitted: list[dict[int, TrialStatus]] = []
    save, run = search.save, search.runner.run

    def counting_save() -> None:
        saved.append({i: t.status for i, t in search.experiment.trials.items()})
        save()

    def recording_run(trial: Any) -> Any:
        submitted.append({i: t.status for i, t in search.experiment.trials.items()})
        return run(trial)

    monkeypatch.setattr(search, "save", counting_save)
    monkeypatch.setattr(search.runner, "run", recording_run)
    try:
        assert search.tick().generating
        _generation_lands(search)
        saved.clear()
        report = search.tick()  # lands three proposals and submits them (fake trainers)
        assert [e.trial for e in report.events if e.reason == "TrialLaunched"] == [0, 1, 2]
        assert saved[0] == dict.fromkeys(range(3), TrialStatus.CANDIDATE)
        assert submitted[0] == saved[0]  # nothing was submitted before that write
        assert len(saved) == 2, saved  # the batch, then the launched trials: not 1 per trial
    finally:
        for t in search.experiment.trials.values():
            search.runner.stop(t)
        search.close()
