"""Ax storage registries that know nasop's metric and runner classes (for JSON and SQL)."""

from __future__ import annotations

from functools import lru_cache

from ax.storage.registry_bundle import RegistryBundle

from nasop.trials.metric import TrialMetric
from nasop.trials.runner import TorchXTrialRunner


@lru_cache(maxsize=1)
def bundle() -> RegistryBundle:
    """One bundle per process; the SQL type ids are fixed so stored rows stay readable."""
    return RegistryBundle(
        metric_clss={TrialMetric: 1701},
        runner_clss={TorchXTrialRunner: 1702},
    )


__all__ = ["bundle"]
