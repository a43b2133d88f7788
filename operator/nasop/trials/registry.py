"""Ax storage registries that know nasop's metric and runner classes (for JSON and SQL)."""

from __future__ import annotations

from functools import lru_cache

from ax.storage.metric_registry import CORE_METRIC_REGISTRY
from ax.storage.registry_bundle import RegistryBundle
from ax.storage.runner_registry import CORE_RUNNER_REGISTRY

from nasop.trials.metric import TrialMetric
from nasop.trials.runner import TorchXTrialRunner


@lru_cache(maxsize=1)
def bundle() -> RegistryBundle:
    """One bundle per process; the SQL type ids are fixed so stored rows stay readable."""
    return RegistryBundle(
        metric_clss={**CORE_METRIC_REGISTRY, TrialMetric: 1701},
        runner_clss={**CORE_RUNNER_REGISTRY, TorchXTrialRunner: 1702},
    )


__all__ = ["bundle"]
