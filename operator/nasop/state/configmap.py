"""The experiment's state in ConfigMaps owned by the NASExperiment (gzipped JSON, layout.py).

`<experiment>-nasop-state` holds the core document: the experiment without its trials, the
generation strategy, nasop's book and the trials not sealed yet. `<experiment>-nasop-state-
<number>-<hash>` each hold 100 sealed trials with their data; they are created once and never
updated, and named by their content, so a writer that loses a race can only leave a chunk that
no core names. A save creates the chunks that filled up since the last one, then replaces the
core if it changed: O(1) objects and bytes per save, whatever the number of trials. The core
is the commit point: its writes carry the resourceVersion that was read, so a stale writer (an
old leader, a restarted operator racing its predecessor) gets 409 and StateConflict instead of
overwriting newer state. Readers get the core, then each chunk it names, by name (no list).

Every object is owned by the NASExperiment (garbage-collected with it) and labelled with the
experiment and its part (`nasop.dev/state: core|chunk`), so `kubectl get cm -l` lists them. A
core of the first format (the whole snapshot in the one ConfigMap) still loads; its first save
writes the new layout in place. An object past the API server's 1 MiB limit raises
StateTooLarge (the operator marks the experiment Failed with that reason).
"""

from __future__ import annotations

import base64
from typing import Any

from ax.storage.registry_bundle import RegistryBundleBase

from nasop import errors, spec
from nasop.state import layout
from nasop.state.base import ExperimentStore, Snapshot

KEY = "state.json.gz"
LIMIT_BYTES = 1_000_000  # the API server refuses objects over ~1 MiB; keep headroom for metadata
PART_LABEL = "nasop.dev/state"  # core | chunk


def configmap_name(experiment: str) -> str:
    return f"{experiment}-nasop-state"[:253]


def chunk_name(experiment: str, key: str) -> str:
    return f"{configmap_name(experiment)[: 252 - len(key)]}-{key}"


class ConfigMapStore(ExperimentStore):
    """A core ConfigMap and chunk ConfigMaps per experiment, in the experiment's namespace."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        registry: RegistryBundleBase,
        owner: dict[str, Any] | None = None,
        chunk_trials: int = layout.CHUNK_TRIALS,
        request_timeout: float | tuple[float, float] | None = None,
    ) -> None:
        """`request_timeout`: seconds (or connect, read) for each read; None: the client's."""
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.registry = registry
        self.owner = owner
        self.chunk_trials = chunk_trials
        self.timeout = {"_request_timeout": request_timeout} if request_timeout else {}
        self.written: dict[str, layout.Written] = {}

    # -- reading ----------------------------------------------------------------------------

    def _read(self, cm_name: str) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.core.read_namespaced_config_map(cm_name, self.namespace, **self.timeout)
        except ApiException as e:
            if e.status == 404:
                return None
            raise errors.BackendUnavailable(f"reading state ConfigMap failed: {e.reason}") from e

    def load(self, *, name: str) -> Snapshot | None:
        cm = self._read(configmap_name(name))
        if cm is None or not (cm.binary_data or {}).get(KEY):
            return None
        raw = cm.binary_data[KEY]
        core = layout.from_bytes(base64.b64decode(raw))
        chunks: dict[str, dict[str, Any]] = {}
        for key in layout.chunk_keys(core) if layout.is_core(core) else []:
            part = self._read(chunk_name(name, key))
            if part is None or not (part.binary_data or {}).get(KEY):
                raise errors.NasopError(
                    f"the state of {name!r} names ConfigMap {chunk_name(name, key)}, "
                    "which is missing",
                    hint="the state cannot be rebuilt without it: start the search again "
                    "under a new name",
                )
            chunks[key] = layout.from_bytes(base64.b64decode(part.binary_data[KEY]))
        snapshot, self.written[name] = layout.load_document(core, chunks, self.registry)
        snapshot.version = cm.metadata.resource_version
        return snapshot

    # -- writing ----------------------------------------------------------------------------

    def _body(self, name: str, cm_name: str, part: str, data: bytes) -> dict[str, Any]:
        if len(data) > LIMIT_BYTES:
            raise errors.StateTooLarge(
                f"the state of {name!r} needs a ConfigMap of {len(data)} bytes gzipped "
                f"({part}), over the ConfigMap limit",
                hint="log fewer points per curve, or run the search with `nasop run --state-url`",
            )
        meta: dict[str, Any] = {
            "name": cm_name,
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "nasop",
                spec.EXPERIMENT_LABEL: name,
                PART_LABEL: part,
            },
        }
        if self.owner:
            meta["ownerReferences"] = [self.owner]
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "binaryData": {KEY: base64.b64encode(data).decode()},
        }

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        from kubernetes.client.rest import ApiException

        plan = layout.split(snapshot, self.registry, self.written.get(name), self.chunk_trials)
        for key, doc in plan.chunks.items():
            body = self._body(name, chunk_name(name, key), "chunk", layout.to_bytes(doc, True))
            try:
                self.core.create_namespaced_config_map(self.namespace, body)
            except ApiException as e:
                if e.status != 409:  # 409: there already, and named by its content: the same
                    raise errors.BackendUnavailable(
                        f"writing state ConfigMap failed: {e.reason}"
                    ) from e
        if plan.core_changed or snapshot.version is None:
            body = self._body(name, configmap_name(name), "core", layout.to_bytes(plan.core, True))
            try:
                if snapshot.version is None:
                    cm = self.core.create_namespaced_config_map(self.namespace, body)
                else:
                    body["metadata"]["resourceVersion"] = snapshot.version
                    cm = self.core.replace_namespaced_config_map(
                        configmap_name(name), self.namespace, body
                    )
            except ApiException as e:
                if e.status == 409:
                    raise errors.StateConflict(
                        f"the state of {name!r} was written by someone else",
                        hint="another operator replica drives this experiment; reload and retry",
                    ) from e
                raise errors.BackendUnavailable(
                    f"writing state ConfigMap failed: {e.reason}"
                ) from e
            snapshot.version = cm.metadata.resource_version
        self.written[name] = plan.written

    def delete(self, *, name: str) -> None:
        """The core and every chunk (also those no core names); the operator leaves this to
        the garbage collector instead (see the RBAC: it never deletes ConfigMaps)."""
        from kubernetes.client.rest import ApiException

        self.written.pop(name, None)
        self.core.delete_collection_namespaced_config_map(
            self.namespace, label_selector=f"{spec.EXPERIMENT_LABEL}={name},{PART_LABEL}"
        )
        try:  # a core of the first format has no part label
            self.core.delete_namespaced_config_map(configmap_name(name), self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    def describe(self) -> str:
        return f"ConfigMap store in namespace {self.namespace}"


__all__ = [
    "KEY",
    "LIMIT_BYTES",
    "PART_LABEL",
    "ConfigMapStore",
    "chunk_name",
    "configmap_name",
]
