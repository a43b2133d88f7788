"""Translate a NASExperimentSpec into an Ax experiment: the one place that knows both.

Like Ax's own `from_config.py`: the rest of the engine sees only Ax objects. Bad combinations that
pydantic cannot see (Ax's own checks) surface as SpecError with the field named.
"""

from __future__ import annotations

from typing import Any, Literal

from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig
from ax.api.utils.instantiation.from_string import optimization_config_from_string
from ax.api.utils.instantiation.from_struct import experiment_from_struct
from ax.api.utils.structs import ExperimentStruct
from ax.core.experiment import Experiment
from ax.core.parameter import FixedParameter, ParameterType
from ax.core.runner import Runner

from nasop import errors, spec
from nasop.trials.metric import TrialMetric


def _choice_type(values: list[Any]) -> Literal["bool", "int", "float", "str"]:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "str"


def parameter_config(p: spec.Parameter) -> RangeParameterConfig | ChoiceParameterConfig:
    """One spec parameter as an Ax API config (fixed parameters are added separately)."""
    if p.type in (spec.ParameterType.INT, spec.ParameterType.FLOAT):
        low, high = p.bounds or (0, 0)
        is_int = p.type is spec.ParameterType.INT
        return RangeParameterConfig(
            name=p.name,
            bounds=(int(low), int(high)) if is_int else (float(low), float(high)),
            parameter_type="int" if is_int else "float",
            scaling="log" if p.log else "linear",
        )
    values = list(p.values or [])
    ptype = _choice_type(values)
    if ptype == "float":
        values = [float(v) for v in values]
    elif ptype == "str":
        values = [str(v) for v in values]
    return ChoiceParameterConfig(
        name=p.name,
        values=values,
        parameter_type=ptype,
        is_ordered=p.ordered if p.ordered is not None else ptype in ("int", "float"),
    )


def _fixed(p: spec.Parameter) -> FixedParameter:
    v = p.value
    ptype = {
        bool: ParameterType.BOOL,
        int: ParameterType.INT,
        float: ParameterType.FLOAT,
    }.get(type(v), ParameterType.STRING)
    value = v if ptype != ParameterType.STRING else str(v)
    return FixedParameter(name=p.name, parameter_type=ptype, value=value)


def objective_string(s: spec.NASExperimentSpec) -> str:
    """Ax's objective syntax: `val_acc, -num_params` (a minus sign means minimise)."""
    return ", ".join(("-" if o.minimize else "") + o.metric for o in s.objectives)


def constraint_strings(s: spec.NASExperimentSpec) -> list[str]:
    """Objective thresholds (turned into ObjectiveThresholds by Ax) and outcome constraints."""
    out = []
    for o in s.objectives:
        if o.threshold is not None:
            out.append(f"{o.metric} {'<=' if o.minimize else '>='} {o.threshold!r}")
    for c in s.parsed_outcome_constraints:
        out.append(f"{c.metric} {c.op} {c.bound!r}")
    return out


def experiment_from_spec(s: spec.NASExperimentSpec, name: str, runner: Runner | None) -> Experiment:
    """Build the Ax experiment: search space, objectives with thresholds, constraints, metrics."""
    ranged = [p for p in s.search_space if p.type is not spec.ParameterType.FIXED]
    try:
        experiment = experiment_from_struct(
            ExperimentStruct(
                parameters=[parameter_config(p) for p in ranged],
                parameter_constraints=list(s.parameter_constraints),
                name=name,
                description=f"nasop experiment {name}",
                experiment_type=None,  # Ax SQL storage accepts only its own enum here
                owner=None,
            )
        )
    except Exception as e:  # Ax's own validation, e.g. an unsatisfiable constraint
        raise errors.SpecError(
            f"spec.searchSpace/parameterConstraints rejected by Ax: {e}",
            hint="check bounds and constraints in the manifest",
        ) from None
    for p in s.search_space:
        if p.type is spec.ParameterType.FIXED:
            experiment.search_space.add_parameter(_fixed(p))

    for metric_name in s.metric_names:
        experiment.add_tracking_metric(
            TrialMetric(name=metric_name, lower_is_better=s.lower_is_better(metric_name))
        )
    try:
        experiment.optimization_config = optimization_config_from_string(
            objective_str=objective_string(s), outcome_constraint_strs=constraint_strings(s)
        )
    except Exception as e:
        raise errors.SpecError(
            f"spec.objectives/outcomeConstraints rejected by Ax: {e}",
            hint="objectives are metric names; constraints look like 'latency_ms <= 5'",
        ) from None
    if runner is not None:
        experiment.runner = runner
    return experiment


__all__ = ["constraint_strings", "experiment_from_spec", "objective_string", "parameter_config"]
