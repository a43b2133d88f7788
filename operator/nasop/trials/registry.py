"""Ax storage registries that know nasop's classes (for JSON and SQL): the trial metric and
runner, and the warm-starting surrogate that the generation strategy holds. Importing it also
registers nasop's acquisition and transforms (their modules do so on import), so a process that
only loads a saved state (a bench, `nasop report`) decodes a strategy that names them."""

from __future__ import annotations

from functools import lru_cache

from ax.storage.json_store.encoders import surrogate_to_dict
from ax.storage.json_store.registry import CORE_DECODER_REGISTRY, CORE_ENCODER_REGISTRY
from ax.storage.metric_registry import CORE_METRIC_REGISTRY
from ax.storage.registry_bundle import RegistryBundle
from ax.storage.runner_registry import CORE_RUNNER_REGISTRY

# imported to register ExhaustiveAcquisition, FitSubset, StoppedAsShorter and KnownObjectives
# with Ax's storage
from nasop.generators import exhaustive, fit_subset, known, stopped_trials  # noqa: F401
from nasop.generators.surrogate import WarmStartSurrogate
from nasop.trials.metric import TrialMetric
from nasop.trials.runner import TorchXTrialRunner


@lru_cache(maxsize=1)
def bundle() -> RegistryBundle:
    """One bundle per process; the SQL type ids are fixed so stored rows stay readable."""
    return RegistryBundle(
        metric_clss={**CORE_METRIC_REGISTRY, TrialMetric: 1701},
        runner_clss={**CORE_RUNNER_REGISTRY, TorchXTrialRunner: 1702},
        json_encoder_registry={**CORE_ENCODER_REGISTRY, WarmStartSurrogate: surrogate_to_dict},
        json_decoder_registry={**CORE_DECODER_REGISTRY, "WarmStartSurrogate": WarmStartSurrogate},
    )


__all__ = ["bundle"]
