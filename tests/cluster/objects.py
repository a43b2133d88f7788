"""The tests' own view of the real API server: objects by resource name, as the cluster admin.

A resource is named ``'group/version/plural'`` (``'v1/plural'`` for the core group), as in
``kubectl get --raw``. Test helpers (the Volcano player, assertions) call the server directly with
the admin token; the operator goes through the :class:`proxy.FaultProxy` with its own
ServiceAccount token, so only its calls are subject to injected faults and to the chart's RBAC.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from typing import Any

from controlplane import ApiError, ControlPlane
from proxy import FaultProxy

MERGE_PATCH = "application/merge-patch+json"


def collection_path(resource: str, namespace: str | None) -> str:
    parts = resource.split("/")
    base = f"/api/{parts[0]}" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}"
    return f"{base}/namespaces/{namespace}/{parts[-1]}" if namespace else f"{base}/{parts[-1]}"


@dataclasses.dataclass(frozen=True)
class AuditedCall:
    """One request as the API server's audit log has it."""

    user: str
    verb: str
    group: str
    resource: str  # with the subresource: "nasexperiments/status"
    namespace: str
    name: str
    code: int


class Cluster:
    """The real API server (admin access) and the fault proxy in front of it for the operator."""

    def __init__(self, plane: ControlPlane, proxy: FaultProxy) -> None:
        self.plane = plane
        self.proxy = proxy
        #: who the operator is: its ServiceAccount token and user name (set by the fixture)
        self.operator_token = ""
        self.operator_user = ""
        #: how many audit events the log held when the test began
        self.audit_start = 0

    @property
    def url(self) -> str:
        """Where the operator connects: the fault proxy."""
        return self.proxy.url

    # ------------------------------------------------------------------ objects

    def create_object(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        body = dict(obj)
        if "apiVersion" not in body or "kind" not in body:
            body.update(self._type_meta(resource))
        return self.plane.request("POST", collection_path(resource, ns), body)

    def get_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.plane.request("GET", f"{collection_path(resource, namespace)}/{name}")
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list_objects(
        self, resource: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = f"?labelSelector={urllib.parse.quote(label_selector)}" if label_selector else ""
        return self.plane.request("GET", collection_path(resource, namespace) + query)["items"]

    def patch_object(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = f"{collection_path(resource, namespace)}/{name}" + (
            f"/{subresource}" if subresource else ""
        )
        return self.plane.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def replace_object(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = f"{collection_path(resource, namespace)}/{name}" + (
            f"/{subresource}" if subresource else ""
        )
        return self.plane.request("PUT", path, obj)

    def delete_object(
        self, resource: str, namespace: str | None, name: str, propagation: str = "Background"
    ) -> dict[str, Any] | None:
        try:
            return self.plane.request(
                "DELETE",
                f"{collection_path(resource, namespace)}/{name}",
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        self.proxy.set_pod_log(namespace, name, text)

    def operator_calls(self) -> list[AuditedCall]:
        """The operator's calls since the test began (waits out the audit log's batching)."""
        time.sleep(0.5)
        return self.audited_calls(self.operator_user, self.plane.audit_events()[self.audit_start :])

    # ------------------------------------------------------------------ what the server saw

    def audited_calls(
        self,
        user: str,
        events: list[dict[str, Any]] | None = None,
    ) -> list[AuditedCall]:
        """The calls ``user`` made, from the API server's audit log (batched: ~0.2 s behind)."""
        calls, seen = [], set()
        for event in self.plane.audit_events() if events is None else events:
            # a watch is logged when its response starts (it completes only when it ends)
            if (
                event.get("stage") not in ("ResponseStarted", "ResponseComplete")
                or event["user"].get("username") != user
                or event["auditID"] in seen
            ):
                continue
            seen.add(event["auditID"])
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            if not ref:  # discovery (/apis, /version, ...)
                resource = "nonResourceURL:" + event["requestURI"].split("?")[0]
            calls.append(
                AuditedCall(
                    user,
                    event["verb"],
                    ref.get("apiGroup", ""),
                    resource,
                    ref.get("namespace", ""),
                    ref.get("name", ""),
                    int((event.get("responseStatus") or {}).get("code", 0)),
                )
            )
        return calls

    # ------------------------------------------------------------------ internals

    def _type_meta(self, resource: str) -> dict[str, str]:
        parts = resource.split("/")
        group_version = "/".join(parts[:-1])
        path = f"/api/{group_version}" if len(parts) == 2 else f"/apis/{group_version}"
        for entry in self.plane.request("GET", path)["resources"]:
            if entry["name"] == parts[-1]:
                return {"apiVersion": group_version, "kind": entry["kind"]}
        raise KeyError(f"{resource} is not served")
