"""Shared fixtures: the real Kubernetes control plane of the tests (tests/cluster).

- ``control_plane`` (session): etcd, kube-apiserver and kube-controller-manager built from Go
  modules, with Volcano's CRDs and the chart installed twice by Helm's SDK (cluster-wide RBAC, and
  a Role in ``default`` only); see tests/cluster/install.py. Started only by tests that use it.
- ``rbac_scope``: ``"cluster"`` unless a test parametrizes it (``indirect``) with ``"namespaced"``.
- ``cluster``: a :class:`objects.Cluster` for one test: the tests' admin view of the server and a
  fresh fault proxy in front of it for the operator; ``default`` is emptied after the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "images"))

import controlplane
import install
from objects import Cluster
from proxy import FaultProxy

import engine


@dataclasses.dataclass
class ControlPlaneSession:
    plane: controlplane.ControlPlane
    tokens: dict[str, str]  # RBAC scope -> the release's ServiceAccount token


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlaneSession]:
    """The real control plane with nasop installed, for the whole session."""
    with (
        tempfile.TemporaryDirectory(prefix="nasop-cluster-") as folder,
        controlplane.running(pathlib.Path(folder), install.install_all) as plane,
    ):
        install.wait_garbage_collector(plane)
        yield ControlPlaneSession(plane, plane.installed)


#: The images the image and node tests build (Dockerfile.trainer, Dockerfile.operator).
TRAINER_IMAGE, OPERATOR_IMAGE = controlplane.TRAINER_IMAGE, controlplane.OPERATOR_IMAGE


@pytest.fixture(scope="session")
def docker() -> Iterator[engine.Docker]:
    """Debian's Docker engine, started by the tests (tests/images/engine.py)."""
    missing = engine.missing_tools()
    assert not missing, f"install {missing} (make test-deps: Debian's docker.io and debootstrap)"
    with engine.daemon() as client:
        yield client
        with contextlib.suppress(subprocess.TimeoutExpired):  # keep the cache small: the last
            client("image", "prune", "--force", check=False, timeout=120)  # run's layers


def _built(docker: engine.Docker, which: str, tag: str) -> str:
    seconds = engine.build(docker, which, tag)
    print(
        f"\n{tag}: built in {seconds:.0f} s, {engine.image_size_mb(docker, tag):.0f} MB", flush=True
    )
    return tag


@pytest.fixture(scope="session")
def trainer_image(docker: engine.Docker) -> str:
    return _built(docker, "trainer", TRAINER_IMAGE)


@pytest.fixture(scope="session")
def operator_image(docker: engine.Docker) -> str:
    return _built(docker, "operator", OPERATOR_IMAGE)


@pytest.fixture()
def rbac_scope(request: pytest.FixtureRequest) -> str:
    """Which release's ServiceAccount the operator runs as (parametrize indirectly to change)."""
    return getattr(request, "param", "cluster")


@pytest.fixture()
def cluster(control_plane: ControlPlaneSession, rbac_scope: str) -> Iterator[Cluster]:
    proxy = FaultProxy(control_plane.plane.url, control_plane.plane.ssl_context())
    with proxy.running():
        view = Cluster(control_plane.plane, proxy)
        view.operator_token = control_plane.tokens[rbac_scope]
        view.operator_user = install.RELEASES[rbac_scope].username
        view.audit_start = len(control_plane.plane.audit_events())
        try:
            yield view
        finally:
            empty_namespace(view, "default")


#: What the tests leave in ``default`` and remove after each test (the GC would take its time).
LEFTOVERS = (
    "nasop.dev/v1alpha1/nasexperiments",
    "batch.volcano.sh/v1alpha1/jobs",
    "batch/v1/jobs",
    "v1/pods",
    "v1/configmaps",
    "v1/events",
    "kopf.dev/v1/kopfpeerings",
    "coordination.k8s.io/v1/leases",
)


def empty_namespace(view: Cluster, namespace: str, timeout: float = 30) -> None:
    """Delete what a test left (finalizers first, so nothing stays Terminating) and wait."""
    for resource in LEFTOVERS:
        for obj in view.list_objects(resource, namespace):
            meta = obj["metadata"]
            if resource.startswith("v1/configmaps") and meta["name"] == "kube-root-ca.crt":
                continue
            if meta.get("finalizers"):
                with contextlib.suppress(controlplane.ApiError):
                    view.patch_object(
                        resource, namespace, meta["name"], {"metadata": {"finalizers": None}}
                    )
            view.delete_object(resource, namespace, meta["name"])
    deadline = time.monotonic() + timeout
    for resource in LEFTOVERS:
        while [
            o
            for o in view.list_objects(resource, namespace)
            if o["metadata"]["name"] != "kube-root-ca.crt"
        ]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resource} in {namespace} not emptied")
            time.sleep(0.05)
