"""The trial metric on real TensorBoard event files: a curve ending in NaN or inf has no final
value, and the fetch says which metric and which step; non-finite values followed by finite
ones are dropped, as Ax does."""

from __future__ import annotations

import pytest
from ax.core.arm import Arm
from ax.core.data import Data
from ax.core.experiment import Experiment
from ax.core.parameter import ParameterType, RangeParameter
from ax.core.search_space import SearchSpace
from ax.utils.common.result import Ok
from torch.utils.tensorboard import SummaryWriter

from nasop.trials import metric

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5, 0.7, NAN], "val_acc is NaN at step 2"),
        ([0.5, INF, -INF], "val_acc is -inf or inf at steps 1 to 2"),
        ([NAN], "val_acc is NaN at step 0"),
        ([0.5, NAN, 0.7], None),
        ([0.5, 0.7], None),
    ],
)
def test_non_finite_tail(values, expected):
    # steps given out of order: the tail is by step, not by record order
    steps = list(range(len(values)))[::-1]
    assert metric.non_finite_tail("val_acc", steps, values[::-1]) == expected


def _fetch(tmp_path, values):
    w = SummaryWriter(str(tmp_path))
    for step, v in enumerate(values):
        w.add_scalar("val_acc", v, step)
    w.close()
    exp = Experiment(SearchSpace([RangeParameter("x", ParameterType.FLOAT, 0.0, 1.0)]), name="m")
    trial = exp.new_trial().add_arm(Arm({"x": 0.5}, name="0_0"))
    trial.update_run_metadata({metric.RUN_METADATA_KEY: str(tmp_path)})
    return metric.TrialMetric("val_acc").fetch_trial_data(trial)


def test_a_curve_ending_in_nan_fails_the_fetch_naming_metric_and_step(tmp_path):
    result = _fetch(tmp_path, [0.5, 0.7, NAN])
    assert not isinstance(result, Ok)
    assert metric.fetch_problem("val_acc", result) == "val_acc is NaN at step 2"


def test_a_nan_inside_the_curve_is_dropped(tmp_path):
    result = _fetch(tmp_path, [0.5, NAN, 0.75])
    assert isinstance(result, Ok)
    df = result.ok.full_df
    assert list(df["step"]) == [0, 2] and df["mean"].iloc[-1] == pytest.approx(0.75)
    assert metric.fetch_problem("val_acc", result) is None


def test_a_missing_metric_is_named(tmp_path):
    result = _fetch(tmp_path, [])
    assert not isinstance(result, Ok)
    assert metric.fetch_problem("val_acc", result) == "no val_acc in its TensorBoard logs"


@pytest.mark.parametrize(
    "curve",
    [
        [(0, 0.5), (1, 0.7), (2, 0.75)],
        [(2, 0.75), (0, 0.5), (1, 0.7)],  # out of order
        [(0, 0.5), (1, NAN), (2, 0.75)],  # a NaN inside is dropped
        [(0, INF), (1, 0.6)],  # so is an inf
        [(0, 0.5), (1, 0.6), (1, 0.7), (2, 0.8)],  # one step twice: averaged
        [(0, 0.5), (1, NAN), (1, 0.7), (2, 0.8)],  # NaN skipped in the average
        [(0.5, 0.1), (1.5, 0.2)],  # steps need not be whole
    ],
)
def test_curve_rows_are_what_axs_tensorboard_metric_makes_of_the_same_records(curve):
    m = metric.TrialMetric("val_acc")
    records = [
        {
            "trial_index": 3,
            "arm_name": "3_0",
            "metric_signature": m.signature,
            "step": float(step),
            "mean": value,
            "sem": NAN,
        }
        for step, value in curve
    ]
    df = super(metric.TrialMetric, m)._process_records_to_df(m, records, "3_0")
    df["metric_name"] = m.name
    assert Data(data_rows=metric.curve_rows(m, 3, "3_0", curve)) == Data(df=df)


def test_curve_rows_refuse_a_curve_ending_in_nan():
    with pytest.raises(metric.NonFiniteMetricError, match="val_acc is NaN at step 2"):
        metric.curve_rows(metric.TrialMetric("val_acc"), 0, "0_0", [(0, 0.5), (1, 0.6), (2, NAN)])
