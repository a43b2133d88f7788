"""The parts of a search: parameters, objectives, budget, optimizer, early stopping, warm start."""

from __future__ import annotations

import enum
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nasop.spec import expression
from nasop.spec.base import ANY_VALUE, NAME_RE, WireModel
from nasop.spec.parsing import parse_duration

# ----------------------------------------------------------------------------- search space


class ParameterType(str, enum.Enum):
    INT = "int"
    FLOAT = "float"
    CHOICE = "choice"
    FIXED = "fixed"


class Parameter(WireModel):
    """One searchable parameter: an int/float range, a choice among values, or a fixed value."""

    name: str = Field(description="Parameter name; passed to the trial as --<name>=<value>.")
    type: ParameterType = Field(description="int | float (ranges), choice (values), fixed (value).")
    bounds: list[float] | None = Field(
        default=None, description="[low, high] for int and float parameters (inclusive)."
    )
    log: bool = Field(default=False, description="Search the range on a log scale (bounds > 0).")
    digits: int | None = Field(
        default=None, ge=0, description="Round float values to this many decimal digits."
    )
    values: list[Any] | None = Field(
        default=None,
        description="Candidate values of a choice parameter (at least two).",
        json_schema_extra={"items": ANY_VALUE},
    )
    ordered: bool | None = Field(
        default=None, description="Whether a choice's values are ordered (default: numeric)."
    )
    value: Any = Field(
        default=None, description="The value of a fixed parameter.", json_schema_extra=ANY_VALUE
    )

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid parameter name: use letters, digits and '_', "
                "starting with a letter"
            )
        return v

    @model_validator(mode="after")
    def _shape_matches_type(self) -> Parameter:
        t = self.type
        if t in (ParameterType.INT, ParameterType.FLOAT):
            if self.bounds is None or len(self.bounds) != 2:
                raise ValueError(f"{t.value} parameter {self.name!r} needs bounds: [low, high]")
            low, high = self.bounds
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"bounds of {self.name!r} must be finite numbers")
            if low >= high:
                raise ValueError(
                    f"bounds of {self.name!r} are reversed or empty ({low} >= {high}): "
                    "write [low, high] with low < high"
                )
            if t is ParameterType.INT and (low != int(low) or high != int(high)):
                raise ValueError(f"int parameter {self.name!r} needs integer bounds")
            if self.log and low <= 0:
                raise ValueError(
                    f"log-scale parameter {self.name!r} needs bounds > 0 (got low={low}): "
                    "raise the lower bound or set log: false"
                )
            if self.values is not None or self.value is not None:
                raise ValueError(
                    f"{t.value} parameter {self.name!r} takes bounds, not values/value"
                )
        elif t is ParameterType.CHOICE:
            if not self.values or len(self.values) < 2:
                raise ValueError(
                    f"choice parameter {self.name!r} needs at least two values; "
                    "for a single value use type: fixed"
                )
            if len({repr(v) for v in self.values}) != len(self.values):
                raise ValueError(f"choice parameter {self.name!r} has duplicate values")
            kinds = {_value_kind(v) for v in self.values}
            if len(kinds) > 1:
                raise ValueError(
                    f"choice parameter {self.name!r} mixes value types {sorted(kinds)}; "
                    "use one type"
                )
            if self.bounds is not None or self.log:
                raise ValueError(f"choice parameter {self.name!r} takes values, not bounds/log")
        elif t is ParameterType.FIXED:
            if self.value is None:
                raise ValueError(f"fixed parameter {self.name!r} needs value")
            if self.bounds is not None or self.values is not None:
                raise ValueError(f"fixed parameter {self.name!r} takes value, not bounds/values")
        return self


def _value_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    raise ValueError(f"unsupported choice value {v!r}: use numbers, strings or booleans")


# ----------------------------------------------------------------------------- objectives


class Goal(str, enum.Enum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Objective(WireModel):
    """One objective metric, as logged by the trial under the same TensorBoard tag."""

    metric: str = Field(description="TensorBoard tag the trial logs (e.g. val_acc).")
    goal: Goal = Field(description="maximize | minimize.")
    threshold: float | None = Field(
        default=None,
        description="Worst acceptable value: the hypervolume reference point for this metric.",
    )
    expression: str | None = Field(
        default=None,
        description="A known objective: its value as arithmetic over numeric parameter names "
        "(numbers, + - * / // % **, parentheses, min, max, abs), e.g. "
        "'784*hidden_size_1 + hidden_size_1*hidden_size_2'. The model then uses it exactly "
        "instead of learning the metric; trials still report the metric.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_is_identifier(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid metric name (letters, digits, '_')")
        return v

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                expression.parse(v)
            except ValueError as e:
                raise ValueError(f"expression {v!r}: {e}") from None
        return v

    @property
    def minimize(self) -> bool:
        return self.goal is Goal.MINIMIZE


# ----------------------------------------------------------------------------- budget etc.


class Budget(WireModel):
    """How many trials, how many at once, and when to give up."""

    max_trials: int = Field(ge=1, description="Total trials to run (at least 1).")
    parallelism: int = Field(default=1, ge=1, description="Trials running at the same time.")
    max_failed_trials: int = Field(
        default=5, ge=0, description="The search fails when more trials than this have failed."
    )
    max_duration: str | None = Field(
        default=None, description="Wall-clock limit, e.g. 90m, 2h, 3600s; no new trials after it."
    )
    stop_when_improvement_below: float | None = Field(
        default=None,
        ge=0,
        description="End the search when the hypervolume grew by less than this fraction "
        "(e.g. 0.01) over the last improvementWindow completed trials.",
    )
    improvement_window: int = Field(
        default=10, ge=1, description="Completed trials over which improvement is measured."
    )

    @field_validator("max_duration")
    @classmethod
    def _duration_parses(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @property
    def max_duration_seconds(self) -> float | None:
        return parse_duration(self.max_duration) if self.max_duration else None


class Method(str, enum.Enum):
    AUTO = "auto"
    SOBOL = "sobol"
    BOTORCH = "botorch"
    SAASBO = "saasbo"


class Optimizer(WireModel):
    """Which generation strategy proposes trials."""

    method: Method = Field(
        default=Method.AUTO,
        description="auto (Sobol then BoTorch qLogNEHVI) | sobol | botorch | saasbo.",
    )
    initial_trials: int | None = Field(
        default=None, ge=1, description="Quasi-random Sobol trials before the model takes over."
    )
    seed: int | None = Field(default=None, description="Seed for reproducible proposals.")


class StoppingRule(WireModel):
    """One rule on one learning curve: a percentile rule (below the given percentile of the
    other trials at the same epoch) or a threshold rule (worse than a fixed value once past
    minProgression), both Ax's strategies; or nasop's Pareto rules: `dominatedBy` (stop a trial
    that other trials already beat on every objective at the same epoch) and `frontProbability`
    (stop a trial unlikely to finish on the front at its size)."""

    metric: str = Field(description="Learning-curve metric (logged every epoch), e.g. val_acc.")
    percentile: float | None = Field(
        default=None,
        gt=0,
        lt=100,
        description="Stop when below this percentile of other trials (default 50).",
    )
    threshold: float | None = Field(
        default=None, description="Stop when worse than this value (instead of a percentile)."
    )
    dominated_by: int | None = Field(
        default=None,
        ge=1,
        description="Pareto rule: stop when at least this many other trials dominate the trial "
        "(this objective's curve at the trial's latest epoch against theirs at the same epoch; "
        "every other objective at its latest value). Needs two or more objectives.",
    )
    front_probability: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Front rule: stop a trial when the probability that its final value of this "
        "objective beats the best final value of the completed trials at least as good on every "
        "other objective (the front at its size: those objectives, e.g. num_params, reported "
        "once at step 0, are known before training) is below this (e.g. 0.05). The final value "
        "is predicted from the trial's latest value plus the gains other trials made from that "
        "step to its last planned step (earlyStopping.epochsParameter minus 1 if set, else the "
        "completed trials' last step). A trial on the front is never stopped. Needs two or more "
        "objectives.",
    )
    gain_ratio: float | None = Field(
        default=None,
        gt=0,
        description="Gain rule: stop a trial when the hypervolume it is expected to add by "
        "finishing (its final value of this objective predicted as for frontProbability, the "
        "other curves' gains weighed by how close their parameters are to the trial's, against "
        "the front at its other objectives, which are known from step 0), per second of "
        "its remaining training, is below this times the hypervolume per trainer second the "
        "search's last 8 completed trials bought (e.g. 1: stop when continuing buys less than "
        "the average recent trial; lower stops less). Keeps a trial with a small chance of a "
        "large gain (the accurate end of the front); stops one that can add only a sliver. A "
        "trial on the front is never stopped. Needs two or more objectives and a reference point "
        "(every objective's threshold, or the one nasop fixes after the initial trials).",
    )
    goal: Goal | None = Field(
        default=None,
        description="Direction of a metric that is neither objective nor constraint "
        "(e.g. val_loss: minimize); taken from the objective otherwise.",
    )
    min_progression: float = Field(
        default=1, ge=0, description="Do not judge a trial before this step (epoch)."
    )
    max_progression: float | None = Field(
        default=None, gt=0, description="Never stop a trial past this step (nearly done)."
    )
    min_curves: int = Field(
        default=5, ge=1, description="Completed curves needed before any trial is stopped."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> StoppingRule:
        kinds = [
            k
            for k, v in (
                ("percentile", self.percentile),
                ("threshold", self.threshold),
                ("dominatedBy", self.dominated_by),
                ("frontProbability", self.front_probability),
                ("gainRatio", self.gain_ratio),
            )
            if v is not None
        ]
        if len(kinds) > 1:
            raise ValueError(
                "give one of percentile, threshold, dominatedBy, frontProbability or gainRatio, "
                "not "
                f"{' and '.join(kinds)}; "
                "compose several rules with earlyStopping.rules to use more than one"
            )
        if self.max_progression is not None and self.max_progression <= self.min_progression:
            raise ValueError(
                f"maxProgression ({self.max_progression:g}) must be above minProgression "
                f"({self.min_progression:g})"
            )
        return self

    def describe(self) -> str:
        if self.threshold is not None:
            return f"{self.metric} worse than {self.threshold:g}"
        if self.dominated_by is not None:
            n = self.dominated_by
            return (
                f"dominated by {n} trial{'s' if n > 1 else ''} on every objective "
                f"({self.metric} at the same epoch)"
            )
        if self.front_probability is not None:
            return f"P(final {self.metric} on the front) < {self.front_probability:g}"
        if self.gain_ratio is not None:
            return f"expected hypervolume gain per second < {self.gain_ratio:g}x the search's"
        return f"{self.metric} below the {self.percentile or 50:g}th percentile"

    def describe_call(
        self,
        probability: float,
        needed: float,
        known: dict[str, float],
        step: int,
        final_step: int,
        curves: int,
    ) -> str:
        """The front rule's reason for one trial, with the numbers that decided it."""
        at = ", ".join(f"{m} {v:g}" for m, v in known.items())
        if math.isinf(needed):
            return (
                f"P(final {self.metric} on the front) = 0 < {self.front_probability:g}: "
                f"{at} is past its objective threshold, it cannot add hypervolume (step {step} "
                f"of {final_step})"
            )
        return (
            f"P(final {self.metric} > {needed:.4g} needed at {at}) = {probability:.2f} "
            f"< {self.front_probability:g} (step {step} of {final_step}, gains of {curves} "
            "curves)"
        )

    def describe_gain(
        self,
        gain: float,
        seconds: float,
        rate: float,
        window: int,
        probability: float,
        needed: float,
        known: dict[str, float],
        step: int,
        final_step: int,
    ) -> str:
        """The gain rule's reason for one trial, with the numbers that decided it."""
        at = ", ".join(f"{m} {v:g}" for m, v in known.items())
        if math.isinf(needed):
            return (
                f"expected hypervolume gain 0: {at} is past its objective threshold, it cannot "
                f"add hypervolume (step {step} of {final_step})"
            )
        return (
            f"expected hypervolume gain {gain:.3g} over {seconds:.0f} s left = {gain / seconds:.3g}"
            f"/s < {self.gain_ratio:g} x {rate:.3g}/s (the last {window} completed trials' "
            f"gain per trainer second); P(final {self.metric} > {needed:.4g} needed at {at}) = "
            f"{probability:.2f} (step {step} of {final_step})"
        )


class EarlyStopping(StoppingRule):
    """One rule written inline (`metric`, `percentile`, ...) or several under `rules`, combined
    with `combine: any` (stop when any rule says so) or `all` (only when every rule agrees)."""

    # optional here (a list of `rules` may stand instead), required in the single rule it extends
    metric: str | None = Field(  # type: ignore[assignment]
        default=None, description="Inline single rule: the learning-curve metric."
    )
    rules: list[StoppingRule] = Field(
        default_factory=list, description="Several rules, combined by `combine`."
    )
    combine: Literal["any", "all"] = Field(
        default="any", description="any: stop when one rule says so (or); all: when all do (and)."
    )
    epochs_parameter: str | None = Field(
        default=None,
        description="The int searchSpace parameter that sets how many epochs a trial trains. "
        "Set it only when the trainer's schedule does not depend on the planned epochs (e.g. a "
        "constant learning rate): the model then takes a trial stopped after k epochs (last "
        "logged step k-1; steps count epochs from 0) as a trial of this parameter = k, an "
        "honest evaluation, instead of its planned value with the epoch-k result. Unset: "
        "stopped trials are modelled at their planned value.",
    )

    @model_validator(mode="after")
    def _inline_or_rules(self) -> EarlyStopping:
        if (self.metric is None) == (not self.rules):
            raise ValueError(
                "give either one inline rule (metric: ...) or a list under rules, not "
                + ("both" if self.rules else "neither")
            )
        return self

    @property
    def all_rules(self) -> list[StoppingRule]:
        if self.rules:
            return list(self.rules)
        fields = self.model_dump(exclude={"rules", "combine", "epochs_parameter"})
        return [StoppingRule.model_validate(fields)]


class WarmStartSource(WireModel):
    """Where earlier trials come from: an experiment in the same store, or a state file."""

    experiment: str | None = Field(
        default=None,
        description="Earlier experiment's name: same state dir locally, same namespace in a "
        "cluster.",
    )
    state_file: str | None = Field(
        default=None, description="Path of a state file written by `nasop run` (local runs)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> WarmStartSource:
        if (self.experiment is None) == (self.state_file is None):
            raise ValueError("give exactly one of experiment or stateFile")
        return self

    def describe(self) -> str:
        return self.experiment or str(self.state_file)


__all__ = [
    "Budget",
    "EarlyStopping",
    "Goal",
    "Method",
    "Objective",
    "Optimizer",
    "Parameter",
    "ParameterType",
    "StoppingRule",
    "WarmStartSource",
]
