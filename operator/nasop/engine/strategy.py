"""The generation strategy: Sobol for `initialTrials`, then BoTorch (qLogNEHVI for several
objectives), or Sobol only, or a fully Bayesian SAAS GP for large spaces.

The model-based node takes Ax's modular BoTorch defaults with nasop's generation settings
(`GENERATION_OPTIONS`): a smaller acquisition-optimiser budget than Ax's defaults (256 raw
samples and 5 restarts instead of 1024 and 20), which cuts the seconds per proposal
(bench/generation_latency.py) without lowering the hypervolume reached (bench/search_quality.py;
results in docs/benchmarks.md). Where the space is discrete and small (at most
`exhaustive.MAX_POINTS` configurations) the acquisition is evaluated on every configuration
instead (`enumerate_small_spaces`). The options are plain dicts stored in the strategy's
`generator_gen_kwargs`, so they round-trip through the saved state with the rest of it. The GP
models each trial's last logged value (`model_last_values`), not the learning curve by step,
and, where the manifest names its epochs parameter (`earlyStopping.epochsParameter`), an
early-stopped trial as the shorter trial it is (`model_stopped_as_shorter`). Past
`FIT_SUBSET_THRESHOLD` trials with data the GP is fitted on `FIT_SUBSET_SIZE` of them (the
Pareto layers, the most recent, a seeded sample: `fit_subset`, `nasop.generators.fit_subset`),
which bounds the seconds per proposal as the search grows (bench/proposal_scale.py); past it
the GP's hyperparameters are re-optimised once every `FIT_SUBSET_REFIT_EVERY` trials and the
acquisition is optimised with `FIT_SUBSET_OPTIMIZER`, the optimisers' fixed cost being what is
left there. An objective the manifest states as an expression of the parameters (or that a
program hands over as a function: `use_known_objectives`) enters the acquisition exactly
instead of through its GP (`nasop.generators.known`); without one the strategy is unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ax.adapter.registry import MBM_X_trans, Y_trans
from ax.adapter.transforms.map_key_to_float import MapKeyToFloat
from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
from ax.api.utils.structs import GenerationStrategyDispatchStruct
from ax.generation_strategy.generation_strategy import GenerationStrategy

from nasop import errors, spec
from nasop.generators import fit_subset as subset
from nasop.generators import known
from nasop.generators.exhaustive import MAX_POINTS, ExhaustiveAcquisition
from nasop.generators.stopped_trials import CONFIG_KEY, StoppedAsShorter
from nasop.generators.surrogate import WarmStartSurrogate

if TYPE_CHECKING:
    from ax.generators.torch.botorch_modular.surrogate import ModelConfig

MODEL_NODE = "MBM"
# Ax's defaults: 1024 raw samples, 20 restarts. No acquisition-function kwargs (e.g. fewer MC
# samples): while no trial beats every threshold Ax switches to qLogProbabilityOfFeasibility,
# whose constructor rejects them, and generation would fail.
GENERATION_OPTIONS: dict[str, dict[str, Any]] = {
    "optimizer_kwargs": {"raw_samples": 256, "num_restarts": 5},
}

#: fit the GP on every trial up to this many trials with data, on a subset past it
FIT_SUBSET_THRESHOLD = subset.THRESHOLD
#: trials in that subset (bench/proposal_scale.py: about 1 s per proposal on one core)
FIT_SUBSET_SIZE = subset.SIZE
#: past the threshold: re-optimise the GP's hyperparameters once every this many trials, and
#: optimise the acquisition with this smaller budget (bench/proposal_scale.py, docs/benchmarks.md)
FIT_SUBSET_REFIT_EVERY = 4
FIT_SUBSET_OPTIMIZER = {"raw_samples": 128, "num_restarts": 2}


def initial_trials(s: spec.NASExperimentSpec) -> int:
    """Explicit value, else 2 per searched parameter (at least 5), at most half the budget."""
    if s.optimizer.initial_trials:
        return s.optimizer.initial_trials
    d = sum(p.type is not spec.ParameterType.FIXED for p in s.search_space)
    return max(1, min(max(5, 2 * d), s.budget.max_trials // 2 or 1))


def _saas_model_config() -> ModelConfig:
    try:  # BoTorch's fully Bayesian GPs run NUTS through NumPyro on JAX
        import jax  # noqa: F401 - imported only to check that it is installed
        import numpyro  # noqa: F401 - imported only to check that it is installed
    except ImportError:
        raise errors.MissingDependencyError(
            "optimizer.method: saasbo needs the optional dependencies jax and numpyro",
            hint="pip install 'nasop[saasbo]' (botorch[fully_bayesian]), or use method: botorch",
        ) from None
    from ax.generators.torch.botorch_modular.surrogate import ModelConfig
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

    return ModelConfig(
        botorch_model_class=SaasFullyBayesianSingleTaskGP,
        mll_options={"disable_progbar": True},
        name="SAASBO",
    )


def apply_generation_options(gs: GenerationStrategy, options: dict[str, dict[str, Any]]) -> None:
    """Set acquisition and optimiser options on the model-based node (no-op without one).

    Args:
        gs: a strategy from `choose_generation_strategy`.
        options: Ax `model_gen_options` keys (`optimizer_kwargs`, `acquisition_function_kwargs`).
    """
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        generator_spec.generator_gen_kwargs["model_gen_options"] = copy.deepcopy(options)


def use_warm_start_surrogate(gs: GenerationStrategy) -> None:
    """Swap the model node's surrogate spec for a `WarmStartSurrogate` holding the same spec.

    The surrogate lives in the strategy's generator kwargs, so it is saved and restored with the
    strategy (nasop's storage registry knows the class) and persists across generation steps.
    """
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        kwargs = generator_spec.generator_kwargs
        if "surrogate" not in kwargs:
            surrogate_spec = kwargs.pop("surrogate_spec", None)
            kwargs["surrogate"] = WarmStartSurrogate(surrogate_spec=surrogate_spec)


def enumerate_small_spaces(gs: GenerationStrategy) -> None:
    """Optimise the acquisition by evaluating it on every configuration where the space is
    discrete and small (`nasop.generators.exhaustive`), Ax's optimiser otherwise."""
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        generator_spec.generator_kwargs["acquisition_class"] = ExhaustiveAcquisition


def model_last_values(gs: GenerationStrategy) -> None:
    """Model each trial's last logged value, without the learning curve's step as a GP input.

    Ax's default (the `MapKeyToFloat` transform) makes the step an input and predicts every
    candidate at the largest step seen. Where the number of epochs is itself searched (the
    tutorial's `epochs`), completed trials tie the step to that parameter, and early-stopped ones
    (4 epochs planned, data at step 0) teach the GP that the step, not the parameter, raises the
    accuracy: it then predicts 1-epoch candidates at 4-epoch accuracy and proposes many cheap
    1-epoch models (tests/engine/test_strategy.py; the search-level effect is in
    docs/benchmarks.md).
    """
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        kwargs = generator_spec.generator_kwargs
        # the node's own transforms if Ax set any, else the BoTorch generator's defaults
        kwargs["transforms"] = [
            t for t in kwargs.get("transforms") or MBM_X_trans + Y_trans if t is not MapKeyToFloat
        ]


def model_stopped_as_shorter(gs: GenerationStrategy, parameter: str) -> None:
    """Model each early-stopped trial at `parameter` = the epochs it trained (see
    `nasop.generators.stopped_trials`), first among the node's transforms so that it rewrites
    the parameter on its own scale. Call after `model_last_values`."""
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        kwargs = generator_spec.generator_kwargs
        rest = [t for t in kwargs.get("transforms") or MBM_X_trans + Y_trans]
        kwargs["transforms"] = [StoppedAsShorter, *(t for t in rest if t is not StoppedAsShorter)]
        configs = dict(kwargs.get("transform_configs") or {})
        configs[CONFIG_KEY] = {"parameter": parameter}
        kwargs["transform_configs"] = configs


def fit_subset(gs: GenerationStrategy, options: dict[str, int] | None) -> None:
    """Fit the model node's GP on a bounded subset of trials past a threshold
    (`nasop.generators.fit_subset.FitSubset`, first among the node's transforms but
    `StoppedAsShorter`, which reads the parameters as the experiment has them), or, with
    `options=None`, on every trial (the transform removed).

    Args:
        gs: a strategy from `choose_generation_strategy`.
        options: the transform's config: `threshold`, `size`, `seed`.
    """
    # first, after StoppedAsShorter (it reads raw parameters)
    _place_transform(
        gs,
        subset.FitSubset,
        subset.CONFIG_KEY,
        dict(options) if options is not None else None,
        lambda rest: 1 if rest and rest[0] is StoppedAsShorter else 0,
    )


def _place_transform(
    gs: GenerationStrategy,
    transform: type,
    key: str,
    config: dict[str, Any] | None,
    position: Callable[[list[type]], int],
) -> None:
    """Remove `transform` and its config from the model node's generators, then, unless
    `config` is None, put it back at `position(the other transforms)` with that config."""
    node = gs.nodes_by_name.get(MODEL_NODE)
    if node is None:
        return
    for generator_spec in node.generator_specs:
        kwargs = generator_spec.generator_kwargs
        rest = [t for t in kwargs.get("transforms") or MBM_X_trans + Y_trans if t is not transform]
        configs = dict(kwargs.get("transform_configs") or {})
        configs.pop(key, None)
        if config is not None:
            at = position(rest)
            rest = [*rest[:at], transform, *rest[at:]]
            configs[key] = config
        kwargs["transforms"] = rest
        kwargs["transform_configs"] = configs


def fit_subset_options(seed: int) -> dict[str, int]:
    """The `FitSubset` config of a new strategy: nasop's defaults and the search's seed."""
    return {
        "threshold": FIT_SUBSET_THRESHOLD,
        "size": FIT_SUBSET_SIZE,
        "seed": seed,
        "refit_every": FIT_SUBSET_REFIT_EVERY,
        **FIT_SUBSET_OPTIMIZER,
    }


def use_known_objectives(
    gs: GenerationStrategy,
    expressions: Mapping[str, str] | None = None,
    functions: Mapping[str, known.KnownFunction] | None = None,
) -> None:
    """Let the acquisition compute these objectives exactly instead of modelling them
    (`nasop.generators.known`): the `KnownObjectives` transform last in the model node's list,
    or removed when both mappings are empty.

    Args:
        gs: a strategy from `choose_generation_strategy`.
        expressions: metric -> arithmetic over parameter names (`nasop.spec.expression`);
            saved with the strategy.
        functions: metric -> callable from parameter tensors to a tensor; not saved (for
            programs that drive the strategy themselves, e.g. a table lookup in a benchmark).
    """
    config: dict[str, Any] = {}
    if expressions:
        config["expressions"] = dict(expressions)
    if functions:
        config["functions"] = dict(functions)
    # last: it reads the transforms before it (StandardizeY among them)
    _place_transform(gs, known.KnownObjectives, known.CONFIG_KEY, config or None, len)


def may_enumerate(s: spec.NASExperimentSpec) -> bool:
    """Whether the acquisition may be enumerated on this space (no float parameter, at most
    `exhaustive.MAX_POINTS` configurations counting every int in a range): then the GP is
    fitted on every trial, since the enumeration avoids only the points the model saw and would
    propose a configuration left out of the subset again (nasop.generators.fit_subset)."""
    points = 1
    for p in s.search_space:
        if p.type is spec.ParameterType.FLOAT:
            return False
        if p.type is spec.ParameterType.CHOICE:
            points *= len(p.values or ())
        elif p.type is spec.ParameterType.INT and p.bounds is not None:
            points *= int(p.bounds[1]) - int(p.bounds[0]) + 1
    return points <= MAX_POINTS


def strategy_from_spec(s: spec.NASExperimentSpec) -> GenerationStrategy:
    """One GenerationStrategy per experiment; its state is saved with the experiment."""
    method = s.optimizer.method
    seed = s.optimizer.seed
    if method is spec.Method.SOBOL:
        return choose_generation_strategy(
            GenerationStrategyDispatchStruct(
                method="random_search",
                initialization_random_seed=seed,
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
    gs = choose_generation_strategy(struct, model_config=model_config)
    apply_generation_options(gs, GENERATION_OPTIONS)
    use_warm_start_surrogate(gs)
    enumerate_small_spaces(gs)
    model_last_values(gs)
    if s.early_stopping is not None and s.early_stopping.epochs_parameter is not None:
        model_stopped_as_shorter(gs, s.early_stopping.epochs_parameter)
    # SAAS: a few dozen trials, fitted whole; enumerated spaces: see may_enumerate
    if method is not spec.Method.SAASBO and not may_enumerate(s):
        fit_subset(gs, fit_subset_options(seed or 0))
    expressions = {o.metric: o.expression for o in s.objectives if o.expression is not None}
    if expressions:
        use_known_objectives(gs, expressions)
    return gs


__all__ = [
    "FIT_SUBSET_OPTIMIZER",
    "FIT_SUBSET_REFIT_EVERY",
    "FIT_SUBSET_SIZE",
    "FIT_SUBSET_THRESHOLD",
    "GENERATION_OPTIONS",
    "apply_generation_options",
    "enumerate_small_spaces",
    "fit_subset",
    "fit_subset_options",
    "initial_trials",
    "may_enumerate",
    "model_last_values",
    "model_stopped_as_shorter",
    "strategy_from_spec",
    "use_known_objectives",
    "use_warm_start_surrogate",
]
