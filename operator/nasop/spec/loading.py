"""Manifests in, validated models out; every error names the field path and says how to fix it."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from nasop import errors
from nasop.spec.base import KIND
from nasop.spec.manifest import NASExperiment, NASExperimentSpec


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each naming the field path in camelCase, e.g.
    `spec.budget.maxTrials`."""
    lines = []
    for e in err.errors():
        path = ((prefix,) if prefix else ()) + e["loc"]
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
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
        raise errors.SpecError(
            f"{path} is not valid YAML: {e}", hint="fix the YAML syntax"
        ) from None
    docs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND] or docs
    if len(docs) != 1:
        raise errors.SpecError(
            f"{path} holds {len(docs)} NASExperiment documents; expected exactly one",
            hint="put one experiment per file",
        )
    return parse_manifest(docs[0])


__all__ = ["format_validation_error", "load_manifest", "parse_manifest", "parse_spec"]
