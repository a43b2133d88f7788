"""Checks that need more than one part of a spec, one function each.

Each takes a validated NASExperimentSpec and raises ValueError naming the field path to fix;
`CROSS_FIELD_RULES` runs them in order, and the first failure is the one reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nasop.spec import expression
from nasop.spec.models import Parameter, ParameterType
from nasop.spec.parsing import parameter_constraint_names, parse_outcome_constraint

if TYPE_CHECKING:
    from nasop.spec.manifest import NASExperimentSpec


def unique_parameter_names(spec: NASExperimentSpec) -> None:
    names = [p.name for p in spec.search_space]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"searchSpace: duplicate parameter names {dupes}")


def something_to_search(spec: NASExperimentSpec) -> None:
    if all(p.type is ParameterType.FIXED for p in spec.search_space):
        raise ValueError("searchSpace: every parameter is fixed; nothing to search")


def unique_objective_metrics(spec: NASExperimentSpec) -> None:
    metrics = [o.metric for o in spec.objectives]
    dupes = sorted({m for m in metrics if metrics.count(m) > 1})
    if dupes:
        raise ValueError(f"objectives: metric listed twice {dupes}")


def parameter_constraints_on_numeric_parameters(spec: NASExperimentSpec) -> None:
    """Each constraint parses and names only known int/float parameters on a linear scale."""
    names = [p.name for p in spec.search_space]
    for i, text in enumerate(spec.parameter_constraints):
        try:
            used = parameter_constraint_names(text)
        except ValueError as e:
            raise ValueError(f"parameterConstraints[{i}]: {e}") from None
        unknown = [n for n in used if n not in names]
        if unknown:
            raise ValueError(
                f"parameterConstraints[{i}]: {text!r} names unknown parameter(s) {unknown}; "
                f"known: {names}"
            )
        logs = [p.name for p in spec.search_space if p.name in used and p.log]
        if logs:
            raise ValueError(
                f"parameterConstraints[{i}]: {text!r} uses log-scale parameter(s) {logs}; "
                "Ax cannot constrain log-scale parameters: drop log or the constraint"
            )
        kinds = {p.type for p in spec.search_space if p.name in used}
        if kinds - {ParameterType.INT, ParameterType.FLOAT}:
            raise ValueError(
                f"parameterConstraints[{i}]: {text!r} may only use int/float parameters"
            )


def outcome_constraints_on_other_metrics(spec: NASExperimentSpec) -> None:
    """Each constraint parses, and constrains a metric that is not an objective."""
    metrics = [o.metric for o in spec.objectives]
    for i, text in enumerate(spec.outcome_constraints):
        try:
            oc = parse_outcome_constraint(text)
        except ValueError as e:
            raise ValueError(f"outcomeConstraints[{i}]: {e}") from None
        if oc.metric in metrics:
            raise ValueError(
                f"outcomeConstraints[{i}]: {oc.metric!r} is already an objective; "
                "use the objective's threshold instead"
            )


def stopping_rules_know_their_direction(spec: NASExperimentSpec) -> None:
    """Each early-stopping rule's metric has one direction, and the Pareto rule has objectives
    to compare."""
    if spec.early_stopping is None:
        return
    metrics = [o.metric for o in spec.objectives]
    known = set(metrics) | {c.metric for c in spec.parsed_outcome_constraints}
    for i, rule in enumerate(spec.early_stopping.all_rules):
        where = f"earlyStopping.rules[{i}]" if spec.early_stopping.rules else "earlyStopping"
        if rule.metric not in known and rule.goal is None:
            raise ValueError(
                f"{where}.metric: {rule.metric!r} is neither an objective nor a "
                f"constrained metric ({sorted(known)}); add goal: minimize|maximize "
                "to stop on another logged curve"
            )
        if rule.dominated_by is not None and (
            rule.metric not in metrics or len(spec.objectives) < 2
        ):
            raise ValueError(
                f"{where}.dominatedBy: the Pareto rule compares trials on every objective,"
                f" so {rule.metric!r} must be one of two or more objectives "
                f"({sorted(metrics)}); use percentile for one objective or another curve"
            )
        model_based = (
            "frontProbability"
            if rule.front_probability is not None
            else "gainRatio"
            if rule.gain_ratio is not None
            else None
        )
        if model_based and (rule.metric not in metrics or len(spec.objectives) < 2):
            raise ValueError(
                f"{where}.{model_based}: the rule predicts one objective's final value "
                f"against the front at the trial's other objectives, so {rule.metric!r} must be "
                f"one of two or more objectives ({sorted(metrics)}), the others reported once "
                "at step 0 (e.g. num_params: minimize); use percentile for one objective"
            )
        curves = {r.metric for r in spec.early_stopping.all_rules}
        moving = sorted(m for m in metrics if m != rule.metric and m in curves)
        if model_based and moving:
            raise ValueError(
                f"{where}.{model_based}: {moving} is watched as a learning curve by another "
                "rule, so it is not known before training; the rule needs the other "
                "objectives reported once, at step 0 (drop that rule or this one)"
            )
        direction = spec.declared_goal(rule.metric)
        if rule.goal is not None and direction is not None and rule.goal is not direction:
            raise ValueError(
                f"{where}.goal: {rule.metric!r} is to {direction.value} elsewhere in the "
                f"spec; drop goal or use {direction.value}"
            )


def epochs_parameter_is_searched_int(spec: NASExperimentSpec) -> None:
    """earlyStopping.epochsParameter names an int parameter whose values are epoch counts."""
    name = spec.early_stopping.epochs_parameter if spec.early_stopping else None
    if name is None:
        return
    where = "earlyStopping.epochsParameter"
    params = {p.name: p for p in spec.search_space}
    p = params.get(name)
    if p is None:
        raise ValueError(
            f"{where}: unknown parameter {name!r}; known: {sorted(params)} (name the parameter "
            "that sets how many epochs a trial trains, or drop the field)"
        )
    if p.type is not ParameterType.INT:
        raise ValueError(
            f"{where}: {name!r} is a {p.type.value} parameter; it must be an int parameter "
            "(bounds: [1, E]) for a stopped trial to stand for a shorter one"
        )
    if p.bounds is None or p.bounds[0] < 1:
        raise ValueError(f"{where}: {name!r} counts epochs, so its lower bound must be >= 1")


def _check_values(p: Parameter) -> list[float] | None:
    """Values of a numeric parameter to check an expression at: its bounds and a few between
    (every value of a small int range), every choice; None for a non-numeric parameter."""
    if p.type is ParameterType.FIXED:
        ok = isinstance(p.value, (int, float)) and not isinstance(p.value, bool)
        return [float(p.value)] if ok else None
    if p.type is ParameterType.CHOICE:
        values = p.values or []
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return [float(v) for v in values] if numeric else None
    low, high = p.bounds or (0.0, 0.0)
    if p.type is ParameterType.INT and high - low <= 16:
        return [float(v) for v in range(int(low), int(high) + 1)]
    if p.log:
        return [low * (high / low) ** (i / 8) for i in range(9)]
    return [low + (high - low) * i / 8 for i in range(9)]


def known_objectives_are_safe(spec: NASExperimentSpec) -> None:
    """Each objective's expression names numeric parameters only, and is a finite real number
    at the bounds of the space (and on a grid between them)."""
    params = {p.name: p for p in spec.search_space}
    for i, o in enumerate(spec.objectives):
        if o.expression is None:
            continue
        where = f"objectives[{i}].expression"
        expr = expression.parse(o.expression)  # the field validator has parsed it already
        unknown = [n for n in expr.names if n not in params]
        if unknown:
            raise ValueError(
                f"{where}: {o.expression!r} names unknown parameter(s) {unknown}; "
                f"known: {sorted(params)}"
            )
        candidates = {n: _check_values(params[n]) for n in expr.names}
        text = [n for n, v in candidates.items() if v is None]
        if text:
            raise ValueError(
                f"{where}: {o.expression!r} uses non-numeric parameter(s) {text}; an expression "
                "computes with numbers: give those choices numeric values or drop them from it"
            )
        try:
            expression.check_on_space(expr, {n: v or [] for n, v in candidates.items()})
        except ValueError as e:
            raise ValueError(f"{where}: {o.expression!r} {e}") from None


def pack_groups_by_known_parameters(spec: NASExperimentSpec) -> None:
    if spec.trial.pack is not None:
        names = [p.name for p in spec.search_space]
        unknown = [n for n in spec.trial.pack.group_by if n not in names]
        if unknown:
            raise ValueError(f"trial.pack.groupBy: unknown parameter(s) {unknown}; known: {names}")


def initial_trials_within_budget(spec: NASExperimentSpec) -> None:
    if spec.optimizer.initial_trials and spec.optimizer.initial_trials > spec.budget.max_trials:
        raise ValueError(
            f"optimizer.initialTrials ({spec.optimizer.initial_trials}) exceeds "
            f"budget.maxTrials ({spec.budget.max_trials})"
        )


CROSS_FIELD_RULES: tuple[Callable[[NASExperimentSpec], None], ...] = (
    unique_parameter_names,
    something_to_search,
    unique_objective_metrics,
    parameter_constraints_on_numeric_parameters,
    outcome_constraints_on_other_metrics,
    stopping_rules_know_their_direction,
    epochs_parameter_is_searched_int,
    known_objectives_are_safe,
    pack_groups_by_known_parameters,
    initial_trials_within_budget,
)

__all__ = ["CROSS_FIELD_RULES"]
