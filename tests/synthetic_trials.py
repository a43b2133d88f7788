"""Ax experiments and Searches holding synthetic finished trials, for tests that need data without
training anything.

The report, the stopping rules, the generation strategy and the stores all read what a trial left
in Ax: its arm, its status and rows of Ax `Data` with Ax's own columns. This module writes those
rows in one place, on an experiment built by nasop's own `experiment_from_spec` (or a `Search`
opened on it), so metric names and goals are the spec's and a test states only values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from ax.core.arm import Arm
from ax.core.base_trial import TrialStatus
from ax.core.data import Data
from ax.core.experiment import Experiment
from ax.core.generator_run import GeneratorRun

from nasop import spec
from nasop.engine.experiment import experiment_from_spec
from nasop.engine.search import Search
from nasop.trials.runner import TorchXTrialRunner

ENDS = (TrialStatus.RUNNING, TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, TrialStatus.FAILED)


@dataclasses.dataclass(frozen=True)
class SyntheticTrial:
    """One trial as a test states it: its parameters, what it logged, and how it ended.

    A metric given as a number is a final value: one Ax row with no `step`. Given as a list, it is
    a curve: one row per step 0, 1, ... (Ax's map data, what the TensorBoard metric fetches); a
    one-element list is a value logged once, at step 0.
    """

    parameters: Mapping[str, Any]
    metrics: Mapping[str, float | Sequence[float]] = dataclasses.field(default_factory=dict)
    status: TrialStatus = TrialStatus.COMPLETED  # or RUNNING, EARLY_STOPPED, FAILED
    reason: str | None = None  # why a FAILED trial failed, as Ax records it
    node: str | None = None  # the generation node that proposed it ("Sobol", "MBM")
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def data_rows(
    trial_index: int, arm_name: str, metrics: Mapping[str, float | Sequence[float]]
) -> list[dict[str, Any]]:
    """Ax `Data` rows for one arm's metrics (see SyntheticTrial for numbers versus curves)."""
    rows: list[dict[str, Any]] = []
    for name, value in metrics.items():
        base = {
            "trial_index": trial_index,
            "arm_name": arm_name,
            "metric_name": name,
            "metric_signature": name,
            "sem": math.nan,
        }
        if isinstance(value, Sequence):
            rows += [
                {**base, "mean": float(v), "step": float(step)} for step, v in enumerate(value)
            ]
        else:
            rows.append({**base, "mean": float(value)})
    return rows


def add_trial(experiment: Experiment, trial: SyntheticTrial) -> int:
    """Create the trial, run it (no runner needed), attach its data and end it; its index."""
    if trial.status not in ENDS:
        raise ValueError(f"status {trial.status.name}: use one of {[s.name for s in ENDS]}")
    if trial.reason is not None and trial.status is not TrialStatus.FAILED:
        raise ValueError(f"a reason is for a FAILED trial, not {trial.status.name}")
    unknown = sorted(set(trial.metrics) - set(experiment.metrics))
    if unknown:
        raise ValueError(
            f"metrics {unknown} are not in the experiment "
            f"{sorted(experiment.metrics)}: add them to the spec (objectives, "
            "outcomeConstraints or an earlyStopping rule)"
        )
    t = experiment.new_trial(
        generator_run=GeneratorRun(
            arms=[Arm(parameters=dict(trial.parameters))], generation_node_name=trial.node
        )
    )
    if trial.run_metadata:
        t.update_run_metadata(dict(trial.run_metadata))
    t.mark_running(no_runner_required=True)
    assert t.arm is not None  # named by the experiment when the trial took it
    if trial.metrics:
        experiment.attach_data(Data(df=pd.DataFrame(data_rows(t.index, t.arm.name, trial.metrics))))
    if trial.status is TrialStatus.COMPLETED:
        t.mark_completed()
    elif trial.status is TrialStatus.EARLY_STOPPED:
        t.mark_early_stopped()
    elif trial.status is TrialStatus.FAILED:
        t.mark_failed(reason=trial.reason)
    return t.index


def add_trials(experiment: Experiment, trials: Iterable[SyntheticTrial]) -> list[int]:
    """add_trial for each, in order; their indices."""
    return [add_trial(experiment, t) for t in trials]


def experiment_with_trials(
    s: spec.NASExperimentSpec, trials: Iterable[SyntheticTrial] = (), name: str = "synthetic"
) -> Experiment:
    """The spec's Ax experiment (no runner) holding these trials."""
    experiment = experiment_from_spec(s, name, runner=None)
    add_trials(experiment, trials)
    return experiment


def search_with_trials(
    manifest: dict[str, Any], log_root: str, trials: Iterable[SyntheticTrial] = ()
) -> Search:
    """A new Search (local runner, no store) on the manifest, holding these trials; the caller
    owns it (close() ends its generation thread)."""
    m = spec.parse_manifest(manifest)
    runner = TorchXTrialRunner(
        scheduler="local_cwd",
        template=m.spec.trial.dump(),
        log_root=log_root,
        experiment_name=m.name,
    )
    search = Search.open(m.spec, m.name, runner, store=None)
    add_trials(search.experiment, trials)
    return search


__all__ = [
    "SyntheticTrial",
    "add_trial",
    "add_trials",
    "data_rows",
    "experiment_with_trials",
    "search_with_trials",
]
