"""The NASExperiment resource as pydantic models: the one source of truth.

The CRD schema in `crds/` is generated from these models (`nasop crd`), `nasop validate` and the
operator parse manifests with them, and the engine reads only these objects, never raw dicts.
Every validation error names the field (pydantic's `loc`) and says how to fix it.

The package re-exports every public name, so callers write `spec.Budget` and `spec.parse_manifest`
without knowing the module: `base` (API names, the wire form), `parsing` (constraint and
duration syntax), `models` (the parts of a search), `trial_template` (how a trial is launched),
`manifest` (the spec and the whole resource), `rules` (checks across parts), `status_model` (the
reported status) and `loading` (manifests in, errors naming fields out).
"""

from __future__ import annotations

from nasop.spec.base import (
    API_VERSION,
    EXPERIMENT_LABEL,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    TRIAL_LABEL,
    VERSION,
)
from nasop.spec.loading import format_validation_error, load_manifest, parse_manifest, parse_spec
from nasop.spec.manifest import NASExperiment, NASExperimentSpec
from nasop.spec.models import (
    Budget,
    EarlyStopping,
    Goal,
    Method,
    Objective,
    Optimizer,
    Parameter,
    ParameterType,
    StoppingRule,
    WarmStartSource,
)
from nasop.spec.parsing import (
    OutcomeConstraint,
    parameter_constraint_names,
    parse_duration,
    parse_outcome_constraint,
)
from nasop.spec.status_model import (
    Condition,
    NASExperimentStatus,
    ParetoPoint,
    Phase,
    TrialCounts,
    now_rfc3339,
)
from nasop.spec.trial_template import Logs, Pack, Resources, TrialTemplate

__all__ = [
    "API_VERSION",
    "EXPERIMENT_LABEL",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "TRIAL_LABEL",
    "VERSION",
    "Budget",
    "Condition",
    "EarlyStopping",
    "Goal",
    "Logs",
    "Method",
    "NASExperiment",
    "NASExperimentSpec",
    "NASExperimentStatus",
    "Objective",
    "Optimizer",
    "OutcomeConstraint",
    "Pack",
    "Parameter",
    "ParameterType",
    "ParetoPoint",
    "Phase",
    "Resources",
    "StoppingRule",
    "TrialCounts",
    "TrialTemplate",
    "WarmStartSource",
    "format_validation_error",
    "load_manifest",
    "now_rfc3339",
    "parameter_constraint_names",
    "parse_duration",
    "parse_manifest",
    "parse_outcome_constraint",
    "parse_spec",
]
