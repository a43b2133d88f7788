"""A surrogate that starts each GP fit from the hyperparameters of the previous one.

Ax refits every GP from its default hyperparameters on each generation step, although one
more trial barely moves the optimum: most of the fit's L-BFGS iterations walk back to where the
last fit ended. `WarmStartSurrogate` copies the previous submodel's learned parameters
(lengthscales, output scale, noise, mean) into the new model before fitting it, and keeps the
new model's input and outcome transforms, which come from the new data. BoTorch's fit falls
back to prior samples if the warm start does not converge, as it does for a cold fit.

bench/generation_latency.py measures what this saves (docs/benchmarks.md). Fully Bayesian
models (SAAS) are fitted by NUTS from priors: left cold.

Past `FitSubset`'s threshold the fit's optimiser is the larger fixed cost of a proposal (about
70 L-BFGS evaluations on the 128-point subset, bench/proposal_scale.py --profile), and one more
trial in a subset of 128 moves the optimum of the hyperparameters less still. There the
transform hands the surrogate a `StepPlan` (its `plan`, set before each fit, None at or below
the threshold): the hyperparameters are re-optimised once every `refit_every` trials with data
(when the count crosses a multiple of it, so a reloaded search refits where an uninterrupted one
does, after the first fit that a reload always makes), and between those the new model on the
new data takes the previous hyperparameters unchanged: Ax's own `fit(state_dict, refit=False)`,
which its cross-validation uses, and AEPsych's `refit_every`. The acquisition reads the plan's
`optimizer_kwargs` (`nasop.generators.exhaustive`). The plan is not saved: the options it comes
from are, in the strategy's transform configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from ax.core.search_space import SearchSpaceDigest
from ax.generators.torch.botorch_modular.surrogate import Surrogate, submodel_input_constructor
from ax.generators.torch.botorch_modular.utils import (
    ModelConfig,
    copy_model_config_with_default_values,
    fit_botorch_model,
)
from botorch.models.fully_bayesian import AbstractFullyBayesianSingleTaskGP
from botorch.models.model import Model
from botorch.utils.datasets import SupervisedDataset


def copy_hyperparameters(source: Model, target: Model) -> int:
    """Copy every learned parameter of `source` whose name and shape `target` shares.

    Returns how many tensors were copied (0 when the models do not match at all).
    """
    if type(source) is not type(target) or isinstance(target, AbstractFullyBayesianSingleTaskGP):
        return 0
    previous = dict(source.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, param in target.named_parameters():
            old = previous.get(name)
            if old is not None and old.shape == param.shape:
                param.copy_(old)
                copied += 1
    return copied


@dataclass(frozen=True)
class StepPlan:
    """What `FitSubset` decided for one generation step past its threshold.

    Attributes:
        trials: trials with data (before the subset).
        refit_every: re-optimise the hyperparameters once every this many trials (1: always).
        optimizer_kwargs: acquisition-optimiser options that replace the strategy's.
    """

    trials: int
    refit_every: int = 1
    optimizer_kwargs: dict[str, int] = field(default_factory=dict)

    def refit_due(self, last_refit: int | None) -> bool:
        """Whether to re-optimise now, the last re-optimisation at `last_refit` trials."""
        every = self.refit_every
        return every <= 1 or last_refit is None or self.trials // every != last_refit // every


class WarmStartSurrogate(Surrogate):
    """Ax's Surrogate, except that a refit on new data starts where the last fit ended, and,
    past the subset's threshold, happens only once every `plan.refit_every` trials."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: this step's plan (set by `FitSubset` before each fit; None: refit every step)
        self.plan: StepPlan | None = None
        #: this step's known outcomes (set by `KnownObjectives` before each fit; None: none)
        self.known: Any = None
        #: trials with data at each outcome group's last re-optimisation past the threshold
        self._refitted_at: dict[tuple[str, ...], int] = {}

    def _note_fit(self, key: tuple[str, ...]) -> None:
        if self.plan is None:
            self._refitted_at.pop(key, None)
        else:
            self._refitted_at[key] = self.plan.trials

    def _construct_model(
        self,
        dataset: SupervisedDataset,
        search_space_digest: SearchSpaceDigest,
        model_config: ModelConfig,
        state_dict: Mapping[str, torch.Tensor] | None,
        refit: bool,
    ) -> Model:
        key = tuple(dataset.outcome_names)
        # Ax annotates the keys as tuple[str]; they are tuples of every outcome name
        previous = self._submodels.get(key)  # type: ignore[arg-type]
        # Ax's own warm start (cross-validation), no refit, or the same data: Ax's path
        fits = refit and state_dict is None and not self._dataset_matches_cache(dataset=dataset)
        if previous is None or not fits:
            model = super()._construct_model(
                dataset=dataset,
                search_space_digest=search_space_digest,
                model_config=model_config,
                state_dict=state_dict,
                refit=refit,
            )
            if fits:
                self._note_fit(key)
            return model
        # The same steps as Surrogate._construct_model, with the copy before the fit.
        model_config = copy_model_config_with_default_values(
            model_config=model_config,
            dataset=dataset,
            search_space_digest=search_space_digest,
        )
        model_class = model_config.botorch_model_class
        assert model_class is not None  # filled in by copy_model_config_with_default_values
        inputs = submodel_input_constructor(
            model_class,
            model_config=model_config,
            dataset=dataset,
            search_space_digest=search_space_digest,
            surrogate=self,
        )
        model = model_class(**inputs)
        copied = copy_hyperparameters(previous, model)
        whole = copied == sum(1 for _ in model.parameters())
        if whole and self.plan is not None and not self.plan.refit_due(self._refitted_at.get(key)):
            return model.eval()  # the previous hyperparameters on the new data
        fit_botorch_model(
            model, mll_class=model_config.mll_class, mll_options=model_config.mll_options
        )
        self._note_fit(key)
        return model


__all__ = ["StepPlan", "WarmStartSurrogate", "copy_hyperparameters"]
