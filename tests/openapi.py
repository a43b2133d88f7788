"""A CRD's OpenAPI 3.0 schema as JSON Schema, so that `jsonschema` can check documents offline.

(The API server is the judge: tests/cluster/test_install.py. This is for fast checks.)"""

from __future__ import annotations

from typing import Any


def openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 (`nullable`, boolean exclusive bounds) -> JSON Schema, so jsonschema can
    check."""
    if isinstance(node, dict):
        out = {
            k: openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")
        }
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if out.get(flag) is True:  # OpenAPI 3.0 -> JSON Schema 2020
                out[flag] = out.pop(bound)
            else:
                out.pop(flag, None)
        return out
    if isinstance(node, list):
        return [openapi_to_jsonschema(v) for v in node]
    return node
