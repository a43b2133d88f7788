"""The NASExperiment resource as pydantic models: the one source of truth.

The CRD schema in `crds/` is generated from these models (`nasop crd`), `nasop validate` and the
operator parse manifests with them, and the engine reads only these objects, never raw dicts.
Every validation error names the field (pydantic's `loc`) and says how to fix it.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from nasop import errors

GROUP = "nasop.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NASExperiment"
PLURAL = "nasexperiments"
SINGULAR = "nasexperiment"
SHORT_NAMES = ["nasx"]
#: labels on everything nasop creates for an experiment (jobs, pods, state ConfigMap)
EXPERIMENT_LABEL = f"{GROUP}/experiment"
TRIAL_LABEL = f"{GROUP}/trial"

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONSTRAINT_RE = re.compile(r"^\s*(?P<lhs>.+?)\s*(?P<op><=|>=)\s*(?P<rhs>.+?)\s*$")
_OUTCOME_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=)\s*(?P<bound>[-+0-9.eE]+)\s*$"
)
_DURATION_RE = re.compile(r"^\s*(?P<n>\d+(\.\d+)?)\s*(?P<unit>s|m|h|d)?\s*$")
_IMMUTABLE = {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]}
_ANY_VALUE = {"x-kubernetes-preserve-unknown-fields": True}


class _Model(BaseModel):
    """camelCase on the wire, unknown fields rejected so that typos are caught, not ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )

    def dump(self) -> dict[str, Any]:
        """The wire form: camelCase keys, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ----------------------------------------------------------------------------- search space


class ParameterType(str, enum.Enum):
    INT = "int"
    FLOAT = "float"
    CHOICE = "choice"
    FIXED = "fixed"


class Parameter(_Model):
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
        json_schema_extra={"items": _ANY_VALUE},
    )
    ordered: bool | None = Field(
        default=None, description="Whether a choice's values are ordered (default: numeric)."
    )
    value: Any = Field(
        default=None, description="The value of a fixed parameter.", json_schema_extra=_ANY_VALUE
    )

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        if not _NAME_RE.match(v):
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
                raise ValueError(f"{t.value} parameter {self.name!r} takes bounds, not values/value")
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


class Objective(_Model):
    """One objective metric, as logged by the trial under the same TensorBoard tag."""

    metric: str = Field(description="TensorBoard tag the trial logs (e.g. val_acc).")
    goal: Goal = Field(description="maximize | minimize.")
    threshold: float | None = Field(
        default=None,
        description="Worst acceptable value: the hypervolume reference point for this metric.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_is_identifier(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid metric name (letters, digits, '_')")
        return v

    @property
    def minimize(self) -> bool:
        return self.goal is Goal.MINIMIZE


class OutcomeConstraint(_Model):
    """A parsed `metric <= bound` / `metric >= bound` constraint."""

    metric: str
    op: Literal["<=", ">="]
    bound: float


def parse_outcome_constraint(text: str) -> OutcomeConstraint:
    """Parse `latency_ms <= 5`; raises ValueError naming the expected syntax."""
    m = _OUTCOME_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not of the form '<metric> <= <number>' or '>='")
    try:
        bound = float(m["bound"])
    except ValueError as e:
        raise ValueError(f"{text!r}: bound {m['bound']!r} is not a number") from e
    return OutcomeConstraint(metric=m["metric"], op=m["op"], bound=bound)  # type: ignore[arg-type]


def parameter_constraint_names(text: str) -> list[str]:
    """Names used by a linear parameter constraint such as `x1 + 2*x2 <= 10`."""
    m = _CONSTRAINT_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a linear inequality using <= or >=")
    allowed = re.compile(r"^[\sA-Za-z0-9_+\-*.eE]+$")
    for side in (m["lhs"], m["rhs"]):
        if not allowed.match(side):
            raise ValueError(f"{text!r}: only +, -, * and numbers may combine parameters")
    names = [n for n in _IDENT_RE.findall(m["lhs"] + " " + m["rhs"]) if not _is_exponent(n)]
    if not names:
        raise ValueError(f"{text!r} names no parameter")
    return names


def _is_exponent(token: str) -> bool:
    return bool(re.fullmatch(r"[eE]\d*", token))


# ----------------------------------------------------------------------------- budget etc.


class Budget(_Model):
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
        default=None, ge=0,
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


def parse_duration(text: str) -> float:
    """`90m` -> 5400.0; a bare number is seconds."""
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 90m, 2h, 3600s")
    return float(m["n"]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m["unit"] or "s"]


class Method(str, enum.Enum):
    AUTO = "auto"
    SOBOL = "sobol"
    BOTORCH = "botorch"
    SAASBO = "saasbo"


class Optimizer(_Model):
    """Which generation strategy proposes trials."""

    method: Method = Field(
        default=Method.AUTO,
        description="auto (Sobol then BoTorch qLogNEHVI) | sobol | botorch | saasbo.",
    )
    initial_trials: int | None = Field(
        default=None, ge=1, description="Quasi-random Sobol trials before the model takes over."
    )
    seed: int | None = Field(default=None, description="Seed for reproducible proposals.")


class StoppingRule(_Model):
    """One rule on one learning curve: a percentile rule (below the given percentile of the
    other trials at the same epoch) or a threshold rule (worse than a fixed value once past
    minProgression), both Ax's strategies; or nasop's Pareto rule (`dominatedBy`: stop a trial
    that other trials already beat on every objective at the same epoch)."""

    metric: str = Field(description="Learning-curve metric (logged every epoch), e.g. val_acc.")
    percentile: float | None = Field(
        default=None, gt=0, lt=100,
        description="Stop when below this percentile of other trials (default 50).",
    )
    threshold: float | None = Field(
        default=None, description="Stop when worse than this value (instead of a percentile)."
    )
    dominated_by: int | None = Field(
        default=None, ge=1,
        description="Pareto rule: stop when at least this many other trials dominate the trial "
        "(this objective's curve at the trial's latest epoch against theirs at the same epoch; "
        "every other objective at its latest value). Needs two or more objectives.",
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
        kinds = [k for k, v in (("percentile", self.percentile), ("threshold", self.threshold),
                                ("dominatedBy", self.dominated_by)) if v is not None]
        if len(kinds) > 1:
            raise ValueError(
                f"give one of percentile, threshold or dominatedBy, not {' and '.join(kinds)}; "
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
            return (f"dominated by {n} trial{'s' if n > 1 else ''} on every objective "
                    f"({self.metric} at the same epoch)")
        return f"{self.metric} below the {self.percentile or 50:g}th percentile"


class EarlyStopping(StoppingRule):
    """One rule written inline (`metric`, `percentile`, ...) or several under `rules`, combined
    with `combine: any` (stop when any rule says so) or `all` (only when every rule agrees)."""

    metric: str | None = Field(  # type: ignore[assignment]
        default=None, description="Inline single rule: the learning-curve metric."
    )
    rules: list[StoppingRule] = Field(
        default_factory=list, description="Several rules, combined by `combine`."
    )
    combine: Literal["any", "all"] = Field(
        default="any", description="any: stop when one rule says so (or); all: when all do (and)."
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
        fields = self.model_dump(exclude={"rules", "combine"})
        return [StoppingRule.model_validate(fields)]


class WarmStartSource(_Model):
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


class Resources(_Model):
    cpu: float = Field(default=1, gt=0, description="CPU cores per trial.")
    mem_mb: int = Field(default=2048, ge=64, alias="memMB", description="Memory per trial, MiB.")
    gpu: int = Field(default=0, ge=0, description="GPUs per trial.")


class Logs(_Model):
    claim_name: str | None = Field(
        default=None,
        description="PersistentVolumeClaim shared by operator and trials for TensorBoard logs.",
    )
    mount_path: str = Field(default="/logs", description="Where the log volume is mounted.")


class Pack(_Model):
    """Trial packing: several proposed trials trained together by one process (one pod)."""

    max_trials: int = Field(
        ge=1, le=1024, alias="maxTrials",
        description="Most trials in one pack; the trainer gets them in NASOP_PACK.",
    )
    group_by: list[str] = Field(
        default_factory=list, alias="groupBy",
        description="Parameters the trials of one pack must agree on (e.g. batch_size).",
    )


class TrialTemplate(_Model):
    """How one trial is launched (the trial contract in DESIGN.md)."""

    image: str = Field(
        default="nasop-trainer:0.1.0", description="Trainer image (cluster runs only)."
    )
    command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "nasop_trainer"],
        description="Entrypoint; parameters are appended as --<name>=<value>.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments before the parameters.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    resources: Resources = Field(default_factory=Resources, description="Per-trial resources.")
    logs: Logs = Field(default_factory=Logs, description="The shared TensorBoard log volume.")
    scheduler: Literal["volcano", "job"] = Field(
        default="volcano",
        description="How a cluster runs trials: a Volcano job (needs Volcano), or a plain "
        "batch/v1 Job (admitted by Kueue when queue names a LocalQueue).",
    )
    queue: str | None = Field(
        default=None,
        description="volcano: the Volcano queue (default 'default'). job: the Kueue LocalQueue "
        "of the trial's namespace (the Job is created suspended for Kueue to admit); unset: "
        "an unqueued Job.",
    )

    pack: Pack | None = Field(
        default=None,
        description="Train up to pack.maxTrials trials in one process (NASOP_PACK); "
        "budget.parallelism then counts packs.",
    )

    @property
    def volcano_queue(self) -> str:
        return self.queue or "default"

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("command must name a program, e.g. [python, -m, nasop_trainer]")
        return v


# ----------------------------------------------------------------------------- spec


class NASExperimentSpec(_Model):
    """What to search, what to optimise, and how to run trials."""

    search_space: list[Parameter] = Field(
        min_length=1, description="Parameters to search.", json_schema_extra=_IMMUTABLE
    )
    parameter_constraints: list[str] = Field(
        default_factory=list,
        description="Linear constraints in Ax syntax, e.g. 'hidden_size_2 <= hidden_size_1'.",
        json_schema_extra=_IMMUTABLE,
    )
    objectives: list[Objective] = Field(
        min_length=1, max_length=4, description="1 to 4 objectives.", json_schema_extra=_IMMUTABLE
    )
    outcome_constraints: list[str] = Field(
        default_factory=list,
        description="Constraints on other metrics, e.g. 'latency_ms <= 5'.",
        json_schema_extra=_IMMUTABLE,
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
    trial: TrialTemplate = Field(default_factory=TrialTemplate, description="Trial launch template.")
    suspend: bool = Field(
        default=False, description="Stop launching new trials; running trials finish."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> NASExperimentSpec:
        names = [p.name for p in self.search_space]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"searchSpace: duplicate parameter names {dupes}")
        if all(p.type is ParameterType.FIXED for p in self.search_space):
            raise ValueError("searchSpace: every parameter is fixed; nothing to search")
        metrics = [o.metric for o in self.objectives]
        dupes = sorted({m for m in metrics if metrics.count(m) > 1})
        if dupes:
            raise ValueError(f"objectives: metric listed twice {dupes}")
        for i, text in enumerate(self.parameter_constraints):
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
            logs = [p.name for p in self.search_space if p.name in used and p.log]
            if logs:
                raise ValueError(
                    f"parameterConstraints[{i}]: {text!r} uses log-scale parameter(s) {logs}; "
                    "Ax cannot constrain log-scale parameters: drop log or the constraint"
                )
            kinds = {p.type for p in self.search_space if p.name in used}
            if kinds - {ParameterType.INT, ParameterType.FLOAT}:
                raise ValueError(
                    f"parameterConstraints[{i}]: {text!r} may only use int/float parameters"
                )
        for i, text in enumerate(self.outcome_constraints):
            try:
                oc = parse_outcome_constraint(text)
            except ValueError as e:
                raise ValueError(f"outcomeConstraints[{i}]: {e}") from None
            if oc.metric in metrics:
                raise ValueError(
                    f"outcomeConstraints[{i}]: {oc.metric!r} is already an objective; "
                    "use the objective's threshold instead"
                )
        if self.early_stopping is not None:
            known = set(metrics) | {c.metric for c in self.parsed_outcome_constraints}
            for i, rule in enumerate(self.early_stopping.all_rules):
                where = f"earlyStopping.rules[{i}]" if self.early_stopping.rules else "earlyStopping"
                if rule.metric not in known and rule.goal is None:
                    raise ValueError(
                        f"{where}.metric: {rule.metric!r} is neither an objective nor a "
                        f"constrained metric ({sorted(known)}); add goal: minimize|maximize "
                        "to stop on another logged curve"
                    )
                if rule.dominated_by is not None and (
                    rule.metric not in metrics or len(self.objectives) < 2
                ):
                    raise ValueError(
                        f"{where}.dominatedBy: the Pareto rule compares trials on every objective,"
                        f" so {rule.metric!r} must be one of two or more objectives "
                        f"({sorted(metrics)}); use percentile for one objective or another curve"
                    )
                direction = self._direction(rule.metric)
                if rule.goal is not None and direction is not None and rule.goal is not direction:
                    raise ValueError(
                        f"{where}.goal: {rule.metric!r} is to {direction.value} elsewhere in the "
                        f"spec; drop goal or use {direction.value}"
                    )
        if self.trial.pack is not None:
            unknown = [n for n in self.trial.pack.group_by if n not in names]
            if unknown:
                raise ValueError(
                    f"trial.pack.groupBy: unknown parameter(s) {unknown}; known: {names}"
                )
        if self.optimizer.initial_trials and self.optimizer.initial_trials > self.budget.max_trials:
            raise ValueError(
                f"optimizer.initialTrials ({self.optimizer.initial_trials}) exceeds "
                f"budget.maxTrials ({self.budget.max_trials})"
            )
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

    def _direction(self, metric: str) -> Goal | None:
        for o in self.objectives:
            if o.metric == metric:
                return o.goal
        for c in self.parsed_outcome_constraints:
            if c.metric == metric:
                return Goal.MINIMIZE if c.op == "<=" else Goal.MAXIMIZE
        return None

    def lower_is_better(self, metric: str) -> bool:
        """Direction of any metric in metric_names (early-stopping rules may name their own)."""
        goal = self._direction(metric)
        if goal is None and self.early_stopping is not None:
            goal = next((r.goal for r in self.early_stopping.all_rules
                         if r.metric == metric and r.goal is not None), None)
        return goal is Goal.MINIMIZE

    def search_fingerprint(self) -> dict[str, Any]:
        """The parts that may not change once a search has started."""
        d = self.dump()
        return {k: d.get(k) for k in ("searchSpace", "parameterConstraints", "objectives",
                                      "outcomeConstraints")}


# ----------------------------------------------------------------------------- status


class Phase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"


class TrialCounts(_Model):
    total: int = Field(default=0, description="Trials created.")
    running: int = Field(default=0, description="Trials launched and not finished.")
    completed: int = Field(default=0, description="Trials that finished with data.")
    failed: int = Field(default=0, description="Trials that failed.")
    early_stopped: int = Field(default=0, description="Trials stopped early.")
    warm_started: int = Field(
        default=0, description="Completed trials copied from spec.warmStart (not run here)."
    )


class ParetoPoint(_Model):
    trial: int = Field(description="Trial index.")
    job: str | None = Field(default=None, description="Scheduler app handle of the trial.")
    parameters: dict[str, Any] = Field(
        description="The trial's parameters.", json_schema_extra=_ANY_VALUE
    )
    metrics: dict[str, float] = Field(description="Observed objective and constraint metrics.")


class Condition(_Model):
    """A Kubernetes condition: the type is a stable name, only the status changes."""

    type: str = Field(description="Ready, Reconciling, Stalled or SpecAccepted.")
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = Field(
        default="", description="RFC 3339 time of the last change of `status`."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )


class NASExperimentStatus(_Model):
    """What the engine reports: the same block for `nasop run` and the operator."""

    phase: Phase = Field(default=Phase.PENDING, description="Lifecycle phase.")
    observed_generation: int | None = Field(default=None, description="Last spec generation seen.")
    message: str | None = Field(default=None, description="Why the phase is what it is.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trial counts by state.")
    generator: str | None = Field(default=None, description="Node that produced the last trial.")
    hypervolume: float | None = Field(default=None, description="Hypervolume of the front.")
    objective_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Reference point used for the hypervolume."
    )
    inferred_thresholds: list[str] = Field(
        default_factory=list,
        description="Objectives without a spec threshold, whose objectiveThresholds value is "
        "inferred from the observed front (its worst value less 10% of its range).",
    )
    pareto_size: int = Field(default=0, description="Number of points on the Pareto front.")
    pareto_front: list[ParetoPoint] = Field(
        default_factory=list, description="Observed non-dominated trials."
    )
    start_time: str | None = Field(default=None, description="When the search started.")
    completion_time: str | None = Field(default=None, description="When the search ended.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Reconciling, Stalled (kstatus) and SpecAccepted."
    )


class NASExperiment(_Model):
    """A whole manifest; `metadata` is free-form (Kubernetes owns it)."""

    api_version: Literal["nasop.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["NASExperiment"] = KIND
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


# ----------------------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each naming the field path in camelCase, e.g. `spec.budget.maxTrials`."""
    lines = []
    for e in err.errors():
        loc = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in ((prefix,) if prefix else ()) + e["loc"]
        ).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(root)'}: {msg}")
    return lines


def parse_spec(data: dict[str, Any]) -> NASExperimentSpec:
    """Validate a `spec` mapping (the operator's entry point); raises SpecError."""
    try:
        return NASExperimentSpec.model_validate(data)
    except ValidationError as e:
        raise errors.SpecError(
            "; ".join(format_validation_error(e, "spec")),
            hint="fix the named field(s); `nasop validate FILE` checks a manifest offline",
        ) from None


def parse_manifest(data: Any) -> NASExperiment:
    """Validate a whole manifest mapping; raises SpecError naming every bad field."""
    if not isinstance(data, dict):
        raise errors.SpecError("the manifest is not a YAML mapping", hint="see examples/")
    try:
        return NASExperiment.model_validate(data)
    except ValidationError as e:
        raise errors.SpecError(
            "; ".join(format_validation_error(e)),
            hint="fix the named field(s); see examples/ and the README's resource reference",
        ) from None


def load_manifest(path: str) -> NASExperiment:
    """Read a YAML file holding one NASExperiment."""
    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    except OSError as e:
        raise errors.SpecError(f"cannot read {path}: {e.strerror}", hint="check the path") from None
    except yaml.YAMLError as e:
        raise errors.SpecError(f"{path} is not valid YAML: {e}", hint="fix the YAML syntax") from None
    docs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND] or docs
    if len(docs) != 1:
        raise errors.SpecError(
            f"{path} holds {len(docs)} NASExperiment documents; expected exactly one",
            hint="put one experiment per file",
        )
    return parse_manifest(docs[0])


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "API_VERSION",
    "Budget",
    "Condition",
    "EarlyStopping",
    "StoppingRule",
    "WarmStartSource",
    "GROUP",
    "Goal",
    "KIND",
    "Method",
    "NASExperiment",
    "NASExperimentSpec",
    "NASExperimentStatus",
    "Objective",
    "OutcomeConstraint",
    "Parameter",
    "ParameterType",
    "ParetoPoint",
    "Phase",
    "TrialCounts",
    "TrialTemplate",
    "load_manifest",
    "parse_manifest",
    "parse_spec",
]
