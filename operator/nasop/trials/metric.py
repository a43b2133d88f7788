"""The trial metric: what the trial reported under the trial contract, or a TensorBoard tag.

By default the values come from the trial's own output (`NASOP1` lines on stdout and the
termination message), read by the experiment's runner (`TorchXTrialRunner.read_output`: a local
file, or the trial's pod in a cluster). With `spec.trial.metricsFormat: tensorboard` they come
from TensorBoard files, as Ax's stock `TensorboardMetric` reads them from
`trial.run_metadata["tb_log_dir"]`. Either way one rule holds: a curve whose last values are NaN
or infinite has no final value. Ax would drop them and report the last finite value as the
trial's result (or say only "All values are NaNs or Infs"); here the fetch fails with a
`NonFiniteMetricError` naming the metric and the step. Non-finite values followed by finite ones
are dropped, as Ax does.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from ax.core.base_trial import BaseTrial
from ax.core.data import MAP_KEY, Data, DataRow
from ax.core.metric import Metric, MetricFetchE, MetricFetchResult
from ax.metrics.tensorboard import RUN_METADATA_KEY, TensorboardMetric
from ax.utils.common.result import Err, Ok
from tensorboard.backend.event_processing import plugin_event_multiplexer as event_multiplexer

log = logging.getLogger(__name__)


class NonFiniteMetricError(ValueError):
    """A metric's last logged value is NaN or infinite: the trial has no result for it."""


class MissingMetricError(ValueError):
    """The trial reported no value of a metric (with what was refused, if anything)."""


def non_finite_tail(name: str, steps: list[float], values: list[float]) -> str | None:
    """What is wrong with a curve whose last values are not finite (e.g. "val_acc is NaN at
    step 3"), or None when its last value is finite."""
    order = np.argsort(steps, kind="stable")
    steps_sorted = np.asarray(steps, dtype=float)[order]
    vals = np.asarray(values, dtype=float)[order]
    if len(vals) == 0 or np.isfinite(vals[-1]):
        return None
    finite = np.flatnonzero(np.isfinite(vals))
    first = finite[-1] + 1 if len(finite) else 0
    kinds = sorted({"NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf") for v in vals[first:]})
    start, end = _step(steps_sorted[first]), _step(steps_sorted[-1])
    where = f"at step {start}" if start == end else f"at steps {start} to {end}"
    return f"{name} is {' or '.join(kinds)} {where}"


def fetch_problem(name: str, result: Any) -> str | None:
    """Why `result` (an Ax fetch result for metric `name`) holds no final value, or None."""
    if isinstance(result, Ok):
        return None
    exc = getattr(getattr(result, "err", None), "exception", None)
    if isinstance(exc, (NonFiniteMetricError, MissingMetricError)):
        return str(exc)
    return f"no {name} in its TensorBoard logs"


def curve_rows(
    metric: Metric, trial_index: int, arm_name: str, curve: list[tuple[float, float]]
) -> list[DataRow]:
    """A reported curve as Ax's data rows, by step: what Ax's TensorboardMetric makes of the
    same records through pandas (values at one step averaged, NaN skipped; a curve whose last
    values are not finite refused; non-finite values before them dropped), built directly.
    The pandas round trip (records, frame, groupby, frame back to rows) was 7% of the
    operator's CPU in a burst of 500 experiments (docs/benchmarks.md)."""
    steps = [float(step) for step, _ in curve]
    problem = non_finite_tail(metric.name, steps, [float(v) for _, v in curve])
    if problem:
        raise NonFiniteMetricError(problem)
    by_step: dict[float, list[float]] = {}
    for step, (_, value) in zip(steps, curve, strict=True):
        by_step.setdefault(step, []).append(float(value))
    rows, dropped = [], 0
    for step in sorted(by_step):
        seen = [v for v in by_step[step] if not math.isnan(v)]
        mean = float(np.mean(seen)) if seen else math.nan
        if not math.isfinite(mean):
            dropped += 1
            continue
        rows.append(
            DataRow(
                trial_index=trial_index,
                arm_name=arm_name,
                metric_name=metric.name,
                metric_signature=metric.signature,
                mean=mean,
                se=math.nan,
                step=step,
            )
        )
    if dropped:
        log.warning(
            "%d / %d data points of %s are NaNs or Infs. Filtering out non-finite values.",
            dropped,
            len(by_step),
            metric.name,
        )
    return rows


def _step(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else f"{s:g}"


class TrialMetric(TensorboardMetric):
    """One spec metric: a learning curve (logged per epoch) or a final value (logged once)."""

    def __init__(self, name: str, lower_is_better: bool | None = None) -> None:
        super().__init__(name=name, tag=name, lower_is_better=lower_is_better)

    def bulk_fetch_trial_data(
        self, trial: BaseTrial, metrics: list[Metric], **kwargs: Any
    ) -> dict[str, MetricFetchResult]:
        """From the trial's reported output, unless its runner reads TensorBoard files."""
        read_output = getattr(trial.experiment.runner, "read_output", None)
        if read_output is None or not trial.run_metadata:
            return super().bulk_fetch_trial_data(trial, metrics, **kwargs)
        output = read_output(trial)
        if output is None:  # metricsFormat: tensorboard
            return super().bulk_fetch_trial_data(trial, metrics, **kwargs)
        collector, member = output
        arm_name = trial.arms[0].name
        out: dict[str, MetricFetchResult] = {}
        for metric in metrics:
            curve = collector.curve(metric.name, member, finite_only=False)
            try:
                if not curve:
                    refused = collector.problems()
                    raise MissingMetricError(
                        f"no {metric.name} reported" + (f" (refused: {refused})" if refused else "")
                    )
                out[metric.signature] = Ok(
                    Data(data_rows=curve_rows(metric, trial.index, arm_name, curve))
                )
            except ValueError as e:  # MissingMetricError, NonFiniteMetricError, Ax's own
                out[metric.signature] = Err(
                    MetricFetchE(message=f"Failed to fetch data for {metric.name}", exception=e)
                )
        return out

    def _get_event_multiplexer_for_trial(
        self, trial: BaseTrial
    ) -> event_multiplexer.EventMultiplexer:
        mul = event_multiplexer.EventMultiplexer(max_reload_threads=1)
        mul.AddRunsFromDirectory(trial.run_metadata[RUN_METADATA_KEY], None)
        mul.Reload()
        return mul

    def _process_records_to_df(
        self, metric: TensorboardMetric, records: list[dict[str, Any]], arm_name: str
    ) -> pd.DataFrame:
        problem = non_finite_tail(
            metric.name, [r[MAP_KEY] for r in records], [r["mean"] for r in records]
        )
        if problem:
            raise NonFiniteMetricError(problem)
        return super()._process_records_to_df(metric=metric, records=records, arm_name=arm_name)

    @classmethod
    def serialize_init_args(cls, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "lower_is_better": obj.lower_is_better}

    def clone(self) -> TrialMetric:
        return TrialMetric(name=self.name, lower_is_better=self.lower_is_better)


__all__ = [
    "RUN_METADATA_KEY",
    "MissingMetricError",
    "NonFiniteMetricError",
    "TrialMetric",
    "fetch_problem",
    "non_finite_tail",
]
