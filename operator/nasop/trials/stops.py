"""How a packed member is asked to stop in a cluster: no shared volume, no trial credentials.

Locally the engine drops a stop file into the member's log dir (`nasop.local.member_files`). A
cluster pod sees no folder of the operator's, so the operator writes the request as the key
``stop-<trial index>`` of one ConfigMap per experiment (``<experiment>-nasop-stops``, owned by
the NASExperiment), and each pack pod mounts that ConfigMap read-only at :data:`MOUNT_PATH`
(``optional``, so a pod never waits for it). The kubelet refreshes a mounted ConfigMap on its
own (within its sync period, about a minute by default); the packed trainer looks for its
member's file at every epoch boundary. The pod needs no token and no RBAC to read it.

The operator needs only what it already has for its state: `configmaps` get, create, update.
"""

from __future__ import annotations

import logging
from typing import Any

from nasop.local.member_files import STOP_DIR_ENV, stop_key

log = logging.getLogger(__name__)

MOUNT_PATH = "/etc/nasop/stops"
VOLUME = "nasop-stops"
#: AppDef metadata key naming the stops ConfigMap that the app's pods mount (not under
#: nasop.dev/: those keys become job labels, and a ConfigMap name can be longer than a label)
APP_METADATA_KEY = "nasop-stops-configmap"
MAX_REASON = 500


def configmap_name(experiment: str) -> str:
    return f"{experiment}-nasop-stops"


def mount(pod_spec: Any, configmap: str) -> None:
    """Mount the stops ConfigMap read-only into every container of this pod spec (a
    kubernetes-client V1PodSpec, as TorchX builds it) and name the folder in the env."""
    from kubernetes.client import models as k8s

    volumes = list(pod_spec.volumes or [])
    if not any(v.name == VOLUME for v in volumes):
        volumes.append(
            k8s.V1Volume(
                name=VOLUME,
                config_map=k8s.V1ConfigMapVolumeSource(name=configmap, optional=True),
            )
        )
    pod_spec.volumes = volumes
    for container in pod_spec.containers:
        mounts = list(container.volume_mounts or [])
        if not any(m.name == VOLUME for m in mounts):
            mounts.append(k8s.V1VolumeMount(name=VOLUME, mount_path=MOUNT_PATH, read_only=True))
        container.volume_mounts = mounts
        env = [e for e in container.env or [] if e.name != STOP_DIR_ENV]
        env.append(k8s.V1EnvVar(name=STOP_DIR_ENV, value=MOUNT_PATH))
        container.env = env


class StopRequests:
    """The stops ConfigMap of one experiment: write a member's stop, read which were asked."""

    def __init__(
        self, client: Any, namespace: str, experiment: str, owner: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = configmap_name(experiment)
        self.owner = owner

    def _core(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self.client)

    def _read(self) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._core().read_namespaced_config_map(self.name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def ensure(self) -> None:
        """Create the (empty) ConfigMap before a pack's pods start, so they mount it at once."""
        if self._read() is None:
            self._create({})

    def _create(self, data: dict[str, str]) -> None:
        from kubernetes.client.rest import ApiException

        meta: dict[str, Any] = {
            "name": self.name,
            "labels": {"app.kubernetes.io/managed-by": "nasop"},
        }
        if self.owner:
            meta["ownerReferences"] = [dict(self.owner)]
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        try:
            self._core().create_namespaced_config_map(self.namespace, body)
        except ApiException as e:
            if e.status != 409:  # made meanwhile (another tick): fine
                raise

    def request(self, member: int, reason: str) -> None:
        """Ask member `member` to stop; idempotent, retried on a write conflict."""
        from kubernetes.client.rest import ApiException

        key, value = stop_key(member), " ".join(reason.split())[:MAX_REASON]
        for _ in range(5):
            current = self._read()
            if current is None:
                try:
                    self._create({key: value})
                    return
                except ApiException as e:
                    log.debug("creating %s failed: %s", self.name, e)
                    continue
            data = dict(current.data or {})
            if data.get(key) == value:
                return
            data[key] = value
            current.data = data
            try:
                self._core().replace_namespaced_config_map(self.name, self.namespace, current)
                return
            except ApiException as e:
                if e.status != 409:
                    raise
        raise RuntimeError(f"could not record the stop of trial {member} in {self.name}")

    def requested(self) -> set[int]:
        """The members whose stop has been asked."""
        current = self._read()
        out = set()
        for key in (current.data or {}) if current is not None else {}:
            if key.startswith("stop-") and key[5:].isdigit():
                out.add(int(key[5:]))
        return out


__all__ = ["APP_METADATA_KEY", "MOUNT_PATH", "StopRequests", "configmap_name", "mount"]
