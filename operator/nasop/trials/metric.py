"""The trial metric: a TensorBoard tag read from the trial's own log directory.

Ax's stock `TensorboardMetric` reads `trial.run_metadata["tb_log_dir"]`, which our runner sets to
a plain string, so this subclass only adds JSON/SQL round-tripping and a quiet multiplexer.
"""

from __future__ import annotations

from typing import Any

from ax.core.base_trial import BaseTrial
from ax.metrics.tensorboard import RUN_METADATA_KEY, TensorboardMetric
from tensorboard.backend.event_processing import plugin_event_multiplexer as event_multiplexer


class TrialMetric(TensorboardMetric):
    """One spec metric: a learning curve (logged per epoch) or a final value (logged once)."""

    def __init__(self, name: str, lower_is_better: bool | None = None) -> None:
        super().__init__(name=name, tag=name, lower_is_better=lower_is_better)

    def _get_event_multiplexer_for_trial(
        self, trial: BaseTrial
    ) -> event_multiplexer.EventMultiplexer:
        mul = event_multiplexer.EventMultiplexer(max_reload_threads=1)
        mul.AddRunsFromDirectory(trial.run_metadata[RUN_METADATA_KEY], None)
        mul.Reload()
        return mul

    @classmethod
    def serialize_init_args(cls, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "lower_is_better": obj.lower_is_better}

    def clone(self) -> TrialMetric:
        return TrialMetric(name=self.name, lower_is_better=self.lower_is_better)


__all__ = ["RUN_METADATA_KEY", "TrialMetric"]
