"""One read the cluster schedulers share: a namespaced custom object, or None when it is gone."""

from __future__ import annotations

from typing import Any


def get_or_none(
    api: Any, group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any] | None:
    """`api` (a kubernetes CustomObjectsApi) GET of one object; None on 404, other errors raise."""
    from kubernetes.client.rest import ApiException

    try:
        return dict(
            api.get_namespaced_custom_object(
                group=group, version=version, namespace=namespace, plural=plural, name=name
            )
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise


__all__ = ["get_or_none"]
