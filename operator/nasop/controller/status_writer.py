"""Status writing: only what changed, as a merge patch through the status subresource.

Every write carries `observedGeneration` on the status and on each condition, and keeps a
condition's lastTransitionTime unless its status changed (:func:`conditions.settle`).
"""

from __future__ import annotations

from typing import Any

from nasop import spec
from nasop.engine import conditions


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (None deletes a key)."""
    old = old or {}
    patch: dict[str, Any] = {}
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            sub = diff(old[k], v)
            if sub:
                patch[k] = sub
        elif old.get(k) != v:
            patch[k] = v
    for k in old:
        if k not in new:
            patch[k] = None
    return patch


def invalid(message: str, generation: int | None) -> dict[str, Any]:
    """The status of a manifest that cannot run: phase Invalid, conditions naming the field."""
    return spec.NASExperimentStatus(
        phase=spec.Phase.INVALID,
        observed_generation=generation,
        message=message,
        conditions=conditions.from_phase(
            spec.Phase.INVALID, message, since=spec.now_rfc3339(), generation=generation
        ),
    ).dump()


def failed(status: dict[str, Any], message: str) -> dict[str, Any]:
    """`status` with phase Failed (the search cannot go on), its conditions to match."""
    running = int((status.get("trials") or {}).get("running") or 0)
    conds = conditions.from_phase(
        spec.Phase.FAILED, message, running=running, since=spec.now_rfc3339()
    )
    return {
        **status,
        "phase": spec.Phase.FAILED.value,
        "message": message,
        "conditions": [c.dump() for c in conds],
    }


def with_condition(status: dict[str, Any], cond: spec.Condition) -> dict[str, Any]:
    """`status` with `cond` in place of the condition of its type (appended if none)."""
    conds = list(status.get("conditions", []))
    at = next((i for i, c in enumerate(conds) if c.get("type") == cond.type), len(conds))
    conds[at : at + 1] = [cond.dump()]
    return {**status, "conditions": conds}


class StatusWriter:
    """Patches `.status` of one NASExperiment, remembering what it last wrote."""

    def __init__(
        self, api_client: Any, namespace: str, name: str, current: dict[str, Any] | None
    ) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.name = name
        self.last = dict(current or {})

    def write(self, status: dict[str, Any]) -> bool:
        """Patch what changed since the last write; False when nothing did."""
        if "conditions" in status:
            status = {
                **status,
                "conditions": conditions.settle(
                    self.last.get("conditions"),
                    status["conditions"],
                    status.get("observedGeneration"),
                ),
            }
        patch = diff(self.last, status)
        if not patch:
            return False
        self.api.patch_namespaced_custom_object_status(
            spec.GROUP,
            spec.VERSION,
            self.namespace,
            spec.PLURAL,
            self.name,
            {"status": patch},
        )
        self.last = status
        return True
