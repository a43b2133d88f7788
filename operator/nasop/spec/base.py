"""What every part of the resource shares: its API names, the wire form, and schema extras."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

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

#: a parameter or metric name: it becomes a `--<name>=` flag and a TensorBoard tag
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: schema extra of a field the API server refuses to change once the object exists
IMMUTABLE: JsonDict = {
    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]
}
#: schema extra of a field that holds any JSON value
ANY_VALUE: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}


class WireModel(BaseModel):
    """camelCase on the wire, unknown fields rejected so that typos are caught, not ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )

    def dump(self) -> dict[str, Any]:
        """The wire form: camelCase keys, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
