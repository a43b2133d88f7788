"""Reading running cluster trials' output as they run (outcomes.follow): a log the kubelet
rotates loses what was not read before, so without an early-stopping rule (which reads every
tick) each running trial is still read every FOLLOW_SECONDS."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ax.core.base_trial import TrialStatus

from nasop.engine import outcomes


class Runner:
    def __init__(self, local: bool = False, failing: bool = False) -> None:
        self.is_local = local
        self.failing = failing
        self.reads: list[int] = []

    def read_output(self, trial: Any) -> None:
        self.reads.append(trial.index)
        if self.failing:
            raise RuntimeError("the API server is away")


def _book(indices: list[int], early_stopping: Any = None) -> Any:
    trials = [SimpleNamespace(index=i) for i in indices]
    return SimpleNamespace(
        spec=SimpleNamespace(early_stopping=early_stopping),
        trials_in=lambda status: trials if status is TrialStatus.RUNNING else [],
    )


def test_running_cluster_trials_are_read_every_follow_seconds() -> None:
    runner, last = Runner(), {}
    book = _book([0, 1])
    outcomes.follow(book, runner, 100.0, last)  # type: ignore[arg-type]
    outcomes.follow(book, runner, 100.0 + outcomes.FOLLOW_SECONDS / 2, last)  # type: ignore[arg-type]
    assert runner.reads == [0, 1]
    outcomes.follow(_book([1]), runner, 100.0 + outcomes.FOLLOW_SECONDS, last)  # type: ignore[arg-type]
    assert runner.reads == [0, 1, 1] and set(last) == {1}  # trial 0 ended: forgotten


def test_no_follow_when_early_stopping_reads_each_tick_or_locally_and_never_a_raise() -> None:
    runner = Runner()
    outcomes.follow(_book([0], early_stopping=object()), runner, 0.0, {})  # type: ignore[arg-type]
    local = Runner(local=True)
    outcomes.follow(_book([0]), local, 0.0, {})  # type: ignore[arg-type]
    assert runner.reads == [] and local.reads == []
    failing = Runner(failing=True)
    outcomes.follow(_book([0, 1]), failing, 0.0, {})  # type: ignore[arg-type]
    assert failing.reads == [0, 1]
