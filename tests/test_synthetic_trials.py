"""The synthetic-trial builder the engine tests stand on: numbers are final values, lists are
curves by step, trials end as asked, and a metric the spec does not know is refused."""

from __future__ import annotations

import math
import re

import pytest
from ax.core.base_trial import TrialStatus

from nasop import spec
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial, data_rows, experiment_with_trials

PARAMS = {
    "hidden_size_1": 16,
    "hidden_size_2": 16,
    "learning_rate": 1e-3,
    "dropout": 0.1,
    "batch_size": 64,
    "epochs": 2,
}


def test_a_number_is_one_row_without_step_and_a_list_is_a_curve() -> None:
    rows = data_rows(3, "3_0", {"num_params": 1000, "val_acc": [0.5, 0.7]})
    assert [(r["metric_name"], r["mean"], r.get("step")) for r in rows] == [
        ("num_params", 1000.0, None),
        ("val_acc", 0.5, 0.0),
        ("val_acc", 0.7, 1.0),
    ]
    assert {(r["trial_index"], r["arm_name"], r["metric_signature"]) for r in rows} == {
        (3, "3_0", "num_params"),
        (3, "3_0", "val_acc"),
    }
    assert all(math.isnan(r["sem"]) for r in rows)


def test_trials_end_as_asked_with_their_data_on_the_spec_experiment() -> None:
    s = spec.parse_manifest(manifest()).spec
    exp = experiment_with_trials(
        s,
        [
            SyntheticTrial(PARAMS, {"val_acc": 0.9, "num_params": 1000.0}),
            SyntheticTrial(
                {**PARAMS, "hidden_size_1": 32},
                {"val_acc": [0.5, 0.6]},
                status=TrialStatus.EARLY_STOPPED,
                node="MBM",
            ),
            SyntheticTrial(
                {**PARAMS, "hidden_size_1": 64}, status=TrialStatus.FAILED, reason="oom"
            ),
            SyntheticTrial(
                {**PARAMS, "hidden_size_1": 128},
                {"val_acc": [0.4]},
                status=TrialStatus.RUNNING,
                run_metadata={"app_handle": "h"},
            ),
        ],
    )
    assert [t.status for t in exp.trials.values()] == [
        TrialStatus.COMPLETED,
        TrialStatus.EARLY_STOPPED,
        TrialStatus.FAILED,
        TrialStatus.RUNNING,
    ]
    assert exp.trials[1].generator_runs[0]._generation_node_name == "MBM"
    assert exp.trials[2].status_reason == "oom"
    assert exp.trials[3].run_metadata["app_handle"] == "h"
    assert exp.trials[0].arms[0].parameters == PARAMS
    df = exp.lookup_data().full_df
    assert sorted(zip(df["trial_index"], df["metric_name"], df["mean"])) == [
        (0, "num_params", 1000.0),
        (0, "val_acc", 0.9),
        (1, "val_acc", 0.5),
        (1, "val_acc", 0.6),
        (3, "val_acc", 0.4),
    ]


@pytest.mark.parametrize(
    "trial, words",
    [
        (SyntheticTrial(PARAMS, {"val_accuracy": 0.9}), "metrics ['val_accuracy'] are not in"),
        (SyntheticTrial(PARAMS, reason="oom"), "a reason is for a FAILED trial, not COMPLETED"),
        (SyntheticTrial(PARAMS, status=TrialStatus.CANDIDATE), "status CANDIDATE: use one of"),
    ],
)
def test_a_trial_the_experiment_cannot_hold_is_refused(trial: SyntheticTrial, words: str) -> None:
    exp = experiment_with_trials(spec.parse_manifest(manifest()).spec)
    with pytest.raises(ValueError, match=re.escape(words)):
        add_trial(exp, trial)
    assert not exp.trials
