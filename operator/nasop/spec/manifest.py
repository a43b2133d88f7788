"""The NASExperiment resource: its spec (what to search, what to optimise, how to run trials)
and the whole manifest."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nasop.spec import rules
from nasop.spec.base import IMMUTABLE, WireModel
from nasop.spec.models import (
    Budget,
    EarlyStopping,
    Goal,
    Objective,
    Optimizer,
    Parameter,
    WarmStartSource,
)
from nasop.spec.parsing import OutcomeConstraint, parse_outcome_constraint
from nasop.spec.status_model import NASExperimentStatus
from nasop.spec.trial_template import TrialTemplate


class NASExperimentSpec(WireModel):
    """What to search, what to optimise, and how to run trials."""

    search_space: list[Parameter] = Field(
        min_length=1, description="Parameters to search.", json_schema_extra=IMMUTABLE
    )
    parameter_constraints: list[str] = Field(
        default_factory=list,
        description="Linear constraints in Ax syntax, e.g. 'hidden_size_2 <= hidden_size_1'.",
        json_schema_extra=IMMUTABLE,
    )
    objectives: list[Objective] = Field(
        min_length=1, max_length=4, description="1 to 4 objectives.", json_schema_extra=IMMUTABLE
    )
    outcome_constraints: list[str] = Field(
        default_factory=list,
        description="Constraints on other metrics, e.g. 'latency_ms <= 5'.",
        json_schema_extra=IMMUTABLE,
    )
    budget: Budget = Field(description="Trial budget and parallelism (mutable).")
    optimizer: Optimizer = Field(default_factory=Optimizer, description="Generation strategy.")
    early_stopping: EarlyStopping | None = Field(
        default=None, description="Optional early stopping on learning curves."
    )
    warm_start: list[WarmStartSource] = Field(
        default_factory=list,
        description="Earlier experiments whose completed, compatible trials seed this search "
        "(read once, when the search starts; they cost no budget).",
    )
    trial: TrialTemplate = Field(
        default_factory=TrialTemplate, description="Trial launch template."
    )
    suspend: bool = Field(
        default=False, description="Stop launching new trials; running trials finish."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> NASExperimentSpec:
        for rule in rules.CROSS_FIELD_RULES:
            rule(self)
        return self

    @property
    def parsed_outcome_constraints(self) -> list[OutcomeConstraint]:
        return [parse_outcome_constraint(t) for t in self.outcome_constraints]

    @property
    def metric_names(self) -> list[str]:
        """Every metric read from the trial: objectives, constrained metrics, then curves that
        only early stopping reads."""
        out = [o.metric for o in self.objectives]
        out += [c.metric for c in self.parsed_outcome_constraints]
        if self.early_stopping is not None:
            out += [r.metric for r in self.early_stopping.all_rules]
        return list(dict.fromkeys(out))  # first mention wins the order

    def declared_goal(self, metric: str) -> Goal | None:
        """The direction the spec gives `metric` as an objective or constrained metric."""
        for o in self.objectives:
            if o.metric == metric:
                return o.goal
        for c in self.parsed_outcome_constraints:
            if c.metric == metric:
                return Goal.MINIMIZE if c.op == "<=" else Goal.MAXIMIZE
        return None

    def lower_is_better(self, metric: str) -> bool:
        """Direction of any metric in metric_names (early-stopping rules may name their own)."""
        goal = self.declared_goal(metric)
        if goal is None and self.early_stopping is not None:
            goal = next(
                (
                    r.goal
                    for r in self.early_stopping.all_rules
                    if r.metric == metric and r.goal is not None
                ),
                None,
            )
        return goal is Goal.MINIMIZE

    def search_fingerprint(self) -> dict[str, Any]:
        """The parts that may not change once a search has started."""
        d = self.dump()
        return {
            k: d.get(k)
            for k in ("searchSpace", "parameterConstraints", "objectives", "outcomeConstraints")
        }


class NASExperiment(WireModel):
    """A whole manifest; `metadata` is free-form (Kubernetes owns it)."""

    api_version: Literal["nasop.dev/v1alpha1"] = Field(
        default="nasop.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["NASExperiment"] = "NASExperiment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: NASExperimentSpec
    status: NASExperimentStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "experiment")

    @field_validator("metadata")
    @classmethod
    def _needs_name(cls, v: dict[str, Any]) -> dict[str, Any]:
        name = v.get("name")
        if not name or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", str(name)):
            raise ValueError(
                "metadata.name must be a DNS-1123 name (lowercase letters, digits, '-', '.')"
            )
        return v


__all__ = ["NASExperiment", "NASExperimentSpec"]
