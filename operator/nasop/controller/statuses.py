"""Status writing: only what changed, as a merge patch through the status subresource."""

from __future__ import annotations

from typing import Any

from nasop import spec


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
    """The status of a manifest that cannot run: phase Invalid and a condition naming the field."""
    return spec.NASExperimentStatus(
        phase=spec.Phase.INVALID,
        observed_generation=generation,
        message=message,
        conditions=[spec.Condition(type="Valid", status="False", reason="InvalidSpec",
                                   message=message,
                                   last_transition_time=spec.now_rfc3339())],
    ).dump()


def with_condition(status: dict[str, Any], cond: spec.Condition) -> dict[str, Any]:
    conds = [c for c in status.get("conditions", []) if c.get("type") != cond.type]
    return {**status, "conditions": conds + [cond.dump()]}


class StatusWriter:
    """Patches `.status` of one NASExperiment, remembering what it last wrote."""

    def __init__(self, api_client: Any, namespace: str, name: str,
                 current: dict[str, Any] | None) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.name = name
        self.last = dict(current or {})

    def write(self, status: dict[str, Any]) -> bool:
        patch = diff(self.last, status)
        if not patch:
            return False
        self.api.patch_namespaced_custom_object_status(
            spec.GROUP, spec.VERSION, self.namespace, spec.PLURAL, self.name,
            {"status": patch},
        )
        self.last = status
        return True
