"""The experiment's state in a ConfigMap owned by the NASExperiment (gzipped Ax JSON).

Writes carry the resourceVersion that was read, so a stale writer (an old leader, a restarted
operator racing its predecessor) gets 409 and StateConflict instead of overwriting newer state.
The ConfigMap is garbage-collected with its owner. A ConfigMap holds at most 1 MiB; past that
the save raises StateTooLarge and the operator marks the experiment Failed with that reason.
"""

from __future__ import annotations

import base64
from typing import Any

from ax.storage.registry_bundle import RegistryBundleBase

from nasop import errors, spec
from nasop.state import codec
from nasop.state.base import ExperimentStore, Snapshot

KEY = "state.json.gz"
LIMIT_BYTES = 1_000_000  # the API server refuses objects over ~1 MiB; keep headroom for metadata


def configmap_name(experiment: str) -> str:
    return f"{experiment}-nasop-state"[:253]


class ConfigMapStore(ExperimentStore):
    """One ConfigMap per experiment, in the experiment's namespace."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        registry: RegistryBundleBase,
        owner: dict[str, Any] | None = None,
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.registry = registry
        self.owner = owner

    def load(self, *, name: str) -> Snapshot | None:
        from kubernetes.client.rest import ApiException

        try:
            cm = self.core.read_namespaced_config_map(configmap_name(name), self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise errors.BackendUnavailable(f"reading state ConfigMap failed: {e.reason}") from e
        raw = (cm.binary_data or {}).get(KEY)
        if not raw:
            return None
        snapshot = codec.from_bytes(base64.b64decode(raw), self.registry)
        snapshot.version = cm.metadata.resource_version
        return snapshot

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        from kubernetes.client.rest import ApiException

        data = codec.to_bytes(snapshot, self.registry, compress=True)
        if len(data) > LIMIT_BYTES:
            raise errors.StateTooLarge(
                f"the state of {name!r} is {len(data)} bytes gzipped, over the ConfigMap limit",
                hint="lower budget.maxTrials, or run the search with `nasop run --state-url`",
            )
        meta: dict[str, Any] = {
            "name": configmap_name(name),
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "nasop", spec.EXPERIMENT_LABEL: name},
        }
        if self.owner:
            meta["ownerReferences"] = [self.owner]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "binaryData": {KEY: base64.b64encode(data).decode()},
        }
        try:
            if snapshot.version is None:
                cm = self.core.create_namespaced_config_map(self.namespace, body)
            else:
                meta["resourceVersion"] = snapshot.version
                cm = self.core.replace_namespaced_config_map(
                    configmap_name(name), self.namespace, body
                )
        except ApiException as e:
            if e.status == 409:
                raise errors.StateConflict(
                    f"the state of {name!r} was written by someone else",
                    hint="another operator replica drives this experiment; reload and retry",
                ) from e
            raise errors.BackendUnavailable(f"writing state ConfigMap failed: {e.reason}") from e
        snapshot.version = cm.metadata.resource_version

    def delete(self, *, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_config_map(configmap_name(name), self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    def describe(self) -> str:
        return f"ConfigMap store in namespace {self.namespace}"


__all__ = ["KEY", "LIMIT_BYTES", "ConfigMapStore", "configmap_name"]
