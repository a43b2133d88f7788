"""The generation strategy: Sobol for `initialTrials`, then BoTorch (qLogNEHVI for several
objectives), or Sobol only, or a fully Bayesian SAAS GP for large spaces.
"""

from __future__ import annotations

from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
from ax.api.utils.structs import GenerationStrategyDispatchStruct
from ax.generation_strategy.generation_strategy import GenerationStrategy

from nasop import errors, spec


def initial_trials(s: spec.NASExperimentSpec) -> int:
    """Explicit value, else 2 per searched parameter (at least 5), at most half the budget."""
    if s.optimizer.initial_trials:
        return s.optimizer.initial_trials
    d = sum(p.type is not spec.ParameterType.FIXED for p in s.search_space)
    return max(1, min(max(5, 2 * d), s.budget.max_trials // 2 or 1))


def _saas_model_config():  # noqa: ANN202 - Ax type imported lazily
    try:
        import pyro  # noqa: F401
    except ImportError:
        raise errors.MissingDependencyError(
            "optimizer.method: saasbo needs the optional dependency pyro-ppl",
            hint="pip install 'nasop[saasbo]' (or pyro-ppl), or use method: botorch",
        ) from None
    from ax.generators.torch.botorch_modular.surrogate import ModelConfig
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

    return ModelConfig(
        botorch_model_class=SaasFullyBayesianSingleTaskGP,
        mll_options={"disable_progbar": True},
        name="SAASBO",
    )


def strategy_from_spec(s: spec.NASExperimentSpec) -> GenerationStrategy:
    """One GenerationStrategy per experiment; its state is saved with the experiment."""
    method = s.optimizer.method
    seed = s.optimizer.seed
    if method is spec.Method.SOBOL:
        return choose_generation_strategy(
            GenerationStrategyDispatchStruct(
                method="random_search", initialization_random_seed=seed,
                initialize_with_center=False,
            )
        )
    struct = GenerationStrategyDispatchStruct(
        method="custom" if method is spec.Method.SAASBO else "fast",
        initialization_budget=initial_trials(s),
        initialization_random_seed=seed,
        initialize_with_center=False,
        use_existing_trials_for_initialization=True,
        allow_exceeding_initialization_budget=False,
    )
    model_config = _saas_model_config() if method is spec.Method.SAASBO else None
    return choose_generation_strategy(struct, model_config=model_config)


__all__ = ["initial_trials", "strategy_from_spec"]
