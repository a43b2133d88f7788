"""Known objectives: a metric that is a known function of the parameters enters the acquisition
exactly, instead of through a GP.

A model's size (an MLP's parameter count, a lookup table's entry) is known before a trial
trains; a GP that learns it from the trials spends trials on it and blurs the front along it,
where the acquisition could compute it. `KnownObjectives` is an Ax transform, last in the model
node's list (after `StandardizeY`), that does nothing to the data: it reads how the transforms
before it encode the parameters into the model's features and scale each metric, and hands the
model's `WarmStartSurrogate` a `KnownOutcomes` for the step (as `FitSubset` hands it a plan).
The acquisition (`nasop.generators.exhaustive.ExhaustiveAcquisition`) then builds BoTorch's
qLogNEHVI on a `ModelList` in which each known outcome is a `GenericDeterministicModel` (the
function of the decoded features, standardised as Ax standardised the metric) and every other
outcome is its GP, subset from the surrogate's model. The GP of the known metric is still fitted
(Ax fits every metric with data) but nothing reads it.

A known function takes a mapping from every parameter name to a tensor of its values (shape
`batch x n`) and returns a tensor of that shape. Numbers are decoded as the trial gets them (a
log-scale parameter undone, an unordered numeric choice from its one-hot features); a
non-numeric choice is its value's index in the parameter's `values`. The manifest states a
function as an arithmetic expression (`nasop.spec.expression`), kept as text in the transform's
config (`{"expressions": {metric: text}}`), so a saved strategy restores it; the engine also
takes Python callables (`{"functions": {metric: callable}}`), for programs that drive the
strategy themselves and do not save it (bench/search_quality.py's table lookup).

Trials still report the metric: the experiment's data, the front and the status show what the
trial reported; only the model uses the function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ax.adapter.transforms.base import Transform
from ax.storage.transform_registry import register_transform
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.model import Model, ModelList
from torch import Tensor

from nasop.spec import expression

#: `transform_configs` key of the transform's options
CONFIG_KEY = "KnownObjectives"

KnownFunction = Callable[[Mapping[str, Tensor]], Tensor]


@dataclass(frozen=True)
class ParameterCode:
    """How one parameter sits in the model's features.

    Attributes:
        kind: `feature` (one feature, the value or its log10), `one_hot` (a group of
            features, one per value), `fixed` (no feature: removed as a fixed parameter).
        features: the feature names (one for `feature`, the group for `one_hot`).
        values: the value of each one-hot feature, or the fixed value.
        log10: the feature is log10 of the value.
    """

    kind: str
    features: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    log10: bool = False


class Decoder:
    """Parameter values (tensors) from rows of the model's features."""

    def __init__(self, codes: Mapping[str, ParameterCode], feature_names: Sequence[str]) -> None:
        index = {name: i for i, name in enumerate(feature_names)}
        self._plan: list[tuple[str, ParameterCode, list[int]]] = []
        for name, code in codes.items():
            missing = [f for f in code.features if f not in index]
            if missing:
                raise ValueError(f"parameter {name!r}: features {missing} not in the model")
            self._plan.append((name, code, [index[f] for f in code.features]))

    def __call__(self, X: Tensor) -> dict[str, Tensor]:
        """Values of each parameter at each row of X (`... x d`): tensors of shape `...`."""
        out: dict[str, Tensor] = {}
        for name, code, cols in self._plan:
            if code.kind == "fixed":
                out[name] = torch.full(X.shape[:-1], code.values[0], dtype=X.dtype)
            elif code.kind == "one_hot":
                values = torch.tensor(code.values, dtype=X.dtype, device=X.device)
                out[name] = values[X[..., cols].argmax(dim=-1)]
            else:
                x = X[..., cols[0]]
                out[name] = 10.0**x if code.log10 else x
        return out


def parameter_codes(transforms: Mapping[str, Transform], parameters: Sequence[Any]) -> dict:
    """How the adapter's transforms (Ax's RemoveFixed, ChoiceToNumericChoice, OneHot, Log)
    encode each parameter of the experiment's search space.

    Args:
        transforms: the adapter's transforms so far, by class name.
        parameters: the experiment's parameters (Ax `Parameter`s).
    """
    fixed = getattr(transforms.get("RemoveFixed"), "nontunable_parameters", {})
    numeric = getattr(transforms.get("ChoiceToNumericChoice"), "encoded_parameters", {})
    one_hot = transforms.get("OneHot")
    groups = getattr(one_hot, "encoded_parameters", {})
    group_values = getattr(one_hot, "encoded_values", {})
    logged = set(getattr(transforms.get("Log"), "transform_parameters", {}))
    logit = set(getattr(transforms.get("Logit"), "transform_parameters", set()))
    codes: dict[str, ParameterCode] = {}
    for p in parameters:
        name = p.name
        if name in logit:
            raise ValueError(f"parameter {name!r} is on a logit scale: not supported")
        if name in fixed:
            value = getattr(fixed[name], "value", None)
            if name in numeric:
                value = numeric[name].get(value, value)
            codes[name] = ParameterCode("fixed", values=(_number(name, value),))
        elif name in groups:
            values = tuple(_number(name, v) for v in group_values[name])
            codes[name] = ParameterCode("one_hot", tuple(groups[name]), values)
        else:
            codes[name] = ParameterCode("feature", (name,), log10=name in logged)
    return codes


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # a non-numeric fixed value: no known function can use it


@dataclass
class KnownOutcomes:
    """The known metrics of one generation step, in the model's scale.

    Attributes:
        functions: metric signature -> known function of the parameters.
        codes: how each parameter is encoded in the features.
        mean, std: Ax's standardisation of each known metric (0 and 1 where it has none).
    """

    functions: dict[str, KnownFunction]
    codes: dict[str, ParameterCode]
    mean: dict[str, float]
    std: dict[str, float]

    def model(self, metric: str, feature_names: Sequence[str]) -> GenericDeterministicModel:
        """The metric as a deterministic BoTorch model of the features, standardised."""
        decode = Decoder(self.codes, feature_names)
        fn, mean, std = self.functions[metric], self.mean[metric], self.std[metric]

        def f(X: Tensor) -> Tensor:
            value = fn(decode(X))
            value = torch.as_tensor(value, dtype=X.dtype).expand(X.shape[:-1])
            return ((value - mean) / std).unsqueeze(-1)

        return GenericDeterministicModel(f, num_outputs=1)

    def replace(self, model: Model, outcomes: Sequence[str], feature_names: Sequence[str]) -> Model:
        """`model` with each known outcome replaced by its deterministic model; the same model
        when none of `outcomes` (its outputs, in order) is known or the shapes do not match."""
        if model.num_outputs != len(outcomes) or not any(m in self.functions for m in outcomes):
            return model
        parts = [
            self.model(m, feature_names) if m in self.functions else model.subset_output([i])
            for i, m in enumerate(outcomes)
        ]
        return ModelList(*parts)


def compile_functions(config: Mapping[str, Any]) -> dict[str, KnownFunction]:
    """The transform config's expressions (parsed: `nasop.spec.expression`) and callables."""
    out: dict[str, KnownFunction] = {}
    for metric, text in (config.get("expressions") or {}).items():
        out[metric] = expression.parse(text)
    for metric, fn in (config.get("functions") or {}).items():
        if not callable(fn):
            raise ValueError(f"transform_configs[{CONFIG_KEY!r}]['functions'][{metric!r}]")
        out[metric] = fn
    return out


class KnownObjectives(Transform):
    """Hands the surrogate the step's `KnownOutcomes` (see the module docstring); the data and
    the search space pass unchanged. Config: `{"expressions": {metric: text}, "functions":
    {metric: callable}}`, each optional; set it with `nasop.engine.strategy.use_known_objectives`.
    """

    no_op_for_experiment_data = True

    def __init__(
        self,
        search_space: Any = None,
        experiment_data: Any = None,
        adapter: Any = None,
        config: Any = None,
    ) -> None:
        super().__init__(
            search_space=search_space,
            experiment_data=experiment_data,
            adapter=adapter,
            config=config,
        )
        surrogate = getattr(getattr(adapter, "generator", None), "_surrogate", None)
        if surrogate is None or not hasattr(surrogate, "known"):
            return
        functions = compile_functions(self.config)
        surrogate.known = self._outcomes(adapter, functions) if functions else None

    @staticmethod
    def _outcomes(adapter: Any, functions: dict[str, KnownFunction]) -> KnownOutcomes:
        transforms = dict(adapter.transforms)
        parameters = list(adapter._experiment.search_space.parameters.values())
        standardize = transforms.get("StandardizeY")
        ymean = getattr(standardize, "Ymean", {})
        ystd = getattr(standardize, "Ystd", {})
        return KnownOutcomes(
            functions=functions,
            codes=parameter_codes(transforms, parameters),
            mean={m: float(ymean.get(m, 0.0)) for m in functions},
            std={m: float(ystd.get(m, 1.0)) for m in functions},
        )


register_transform(KnownObjectives)  # strategies that use it are saved and restored

__all__ = [
    "CONFIG_KEY",
    "Decoder",
    "KnownFunction",
    "KnownObjectives",
    "KnownOutcomes",
    "ParameterCode",
    "compile_functions",
    "parameter_codes",
]
