"""A surrogate that starts each GP fit from the hyperparameters of the previous one.

Ax refits every GP from its default hyperparameters on each generation step, although one
more trial barely moves the optimum: most of the fit's L-BFGS iterations walk back to where the
last fit ended. `WarmStartSurrogate` copies the previous submodel's learned parameters
(lengthscales, output scale, noise, mean) into the new model before fitting it, and keeps the
new model's input and outcome transforms, which come from the new data. BoTorch's fit falls
back to prior samples if the warm start does not converge, as it does for a cold fit.

bench/generation_latency.py measures what this saves (docs/benchmarks.md). Fully Bayesian
models (SAAS) are fitted by NUTS from priors: left cold.
"""

from __future__ import annotations

from collections.abc import Mapping

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


class WarmStartSurrogate(Surrogate):
    """Ax's Surrogate, except that a refit on new data starts where the last fit ended."""

    def _construct_model(
        self,
        dataset: SupervisedDataset,
        search_space_digest: SearchSpaceDigest,
        model_config: ModelConfig,
        state_dict: Mapping[str, torch.Tensor] | None,
        refit: bool,
    ) -> Model:
        # Ax annotates the keys as tuple[str]; they are tuples of every outcome name
        previous = self._submodels.get(tuple(dataset.outcome_names))  # type: ignore[arg-type]
        if (
            previous is None
            or state_dict is not None  # Ax's own warm start (cross-validation) or no refit
            or not refit
            or self._dataset_matches_cache(dataset=dataset)
        ):
            return super()._construct_model(
                dataset=dataset,
                search_space_digest=search_space_digest,
                model_config=model_config,
                state_dict=state_dict,
                refit=refit,
            )
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
        copy_hyperparameters(previous, model)
        fit_botorch_model(
            model, mll_class=model_config.mll_class, mll_options=model_config.mll_options
        )
        return model


__all__ = ["WarmStartSurrogate", "copy_hyperparameters"]
