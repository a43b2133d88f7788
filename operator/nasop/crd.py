"""Generate the NASExperiment CRD from the pydantic models in `nasop.spec`.

The API server wants a structural schema: no `$ref`, no titles, no `additionalProperties: false`
beside `properties` (kubernetes/kubernetes#94593), `nullable` instead of `anyOf: [.., null]`, no
defaults it would write back into stored objects, and OpenAPI 3.0's boolean exclusive bounds
(`minimum: 0` + `exclusiveMinimum: true`) where pydantic writes JSON Schema 2020's numeric ones.
`nasop crd` writes the result into `crds/` and a test fails when the committed file drifts from the
models.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from nasop import spec

_DROP = {"title", "default", "$defs", "discriminator"}


class _K8sSchema(GenerateJsonSchema):
    def nullable_schema(self, schema: Any) -> dict[str, Any]:
        inner = self.generate_inner(schema["schema"])
        return {**inner, "nullable": True}

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline_refs({**target, **rest}, defs)
        if "allOf" in node and len(node["allOf"]) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return _inline_refs({**node["allOf"][0], **rest}, defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _structural(node: Any) -> Any:
    """Drop what the API server rejects or would act on; keep descriptions and validations."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in _DROP:
                continue
            if k == "additionalProperties" and v is False:
                continue
            if k == "properties":
                out[k] = {name: _structural(sub) for name, sub in v.items()}
            else:
                out[k] = _structural(v)
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if isinstance(out.get(flag), (int, float)) and not isinstance(out[flag], bool):
                out[bound] = out[flag]
                out[flag] = True
        if "const" in out:  # Literal fields: an enum of one is structural, const is not
            out["enum"] = [out.pop("const")]
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        return out
    if isinstance(node, list):
        return [_structural(v) for v in node]
    return node


def _any_to_preserve(node: Any) -> Any:
    """`Any` yields `{}`; a structural schema needs a type or preserve-unknown-fields."""
    if isinstance(node, dict):
        node = {k: _any_to_preserve(v) for k, v in node.items()}
        if "properties" in node:
            for sub in node["properties"].values():
                if isinstance(sub, dict) and not (
                    {"type", "x-kubernetes-preserve-unknown-fields", "anyOf", "enum"} & sub.keys()
                ):
                    sub["x-kubernetes-preserve-unknown-fields"] = True
        return node
    if isinstance(node, list):
        return [_any_to_preserve(v) for v in node]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(schema_generator=_K8sSchema, by_alias=True)
    inlined = _inline_refs(raw, raw.get("$defs", {}))
    return _any_to_preserve(_structural(inlined))


def _resource_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the whole object: spec and status from the models."""
    status_schema = model_schema(spec.NASExperimentStatus)
    status_schema.pop("required", None)
    return {
        "type": "object",
        "description": "A multi-objective neural architecture search (Ax + BoTorch + TorchX).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": model_schema(spec.NASExperimentSpec),
            "status": status_schema,
        },
    }


#: what `kubectl get nasx` shows (priority 1: only with -o wide)
_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Ready",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The Ready condition (kstatus)",
    },
    {
        "name": "Trials",
        "type": "integer",
        "jsonPath": ".status.trials.total",
        "description": "Trials created",
    },
    {
        "name": "Running",
        "type": "integer",
        "jsonPath": ".status.trials.running",
        "description": "Trials whose pods run",
    },
    {
        "name": "Pending",
        "type": "integer",
        "jsonPath": ".status.trials.pending",
        "description": "Trials launched whose pods do not run yet (see the Reconciling condition)",
    },
    {"name": "Completed", "type": "integer", "jsonPath": ".status.trials.completed", "priority": 1},
    {
        "name": "Pareto",
        "type": "integer",
        "jsonPath": ".status.paretoSize",
        "description": "Points on the Pareto front",
    },
    {"name": "Hypervolume", "type": "number", "jsonPath": ".status.hypervolume"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{spec.PLURAL}.{spec.GROUP}",
            "labels": {"app.kubernetes.io/name": "nasop", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": list(spec.SHORT_NAMES),
                "categories": ["nasop", "ml"],
            },
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(_PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": _resource_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `nasop crd` from operator/nasop/spec/. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


__all__ = ["crd", "crd_yaml", "model_schema"]
