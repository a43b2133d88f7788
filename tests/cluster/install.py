"""Install nasop on the test control plane the way a user does, and mint the operator's tokens.

- Volcano's own CRDs (Job, Queue, PodGroup, Command) from Volcano's Go module at the pinned release
  (``go mod download``: the files are in the module zip), and the ``default`` Queue;
- the chart, by the embedded Helm engine (helm-python-sdk: Helm 4, server-side apply, CRDs from the
  chart's crds/), twice: release ``nasop`` with cluster-wide RBAC and release ``nasop-ns`` with a
  Role
  in ``default`` only; the operator runs as either release's ServiceAccount with a token from the
  TokenRequest API, so the server grants exactly what that release's RBAC grants.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import time
from typing import Any

import yaml
from controlplane import HERE, ApiError, ControlPlane, poll

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "nasop"
VOLCANO_CRDS = (
    "batch.volcano.sh_jobs.yaml",
    "scheduling.volcano.sh_queues.yaml",
    "scheduling.volcano.sh_podgroups.yaml",
    "bus.volcano.sh_commands.yaml",
)
WATCHED = "default"


@dataclasses.dataclass(frozen=True)
class Release:
    """One installed release of the chart: who its operator is and what it may do."""

    name: str
    namespace: str
    scope: str  # "cluster" | "namespaced"

    @property
    def service_account(self) -> str:
        return self.name

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


RELEASES = {
    "cluster": Release("nasop", "nasop-system", "cluster"),
    "namespaced": Release("nasop-ns", "nasop-ns-system", "namespaced"),
}


def volcano_crd_dir() -> pathlib.Path:
    """Volcano's CRDs at the release pinned in go/volcano/go.mod (the one the node runs)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", "volcano.sh/volcano"],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE / "go" / "volcano",
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"},
    ).stdout
    return pathlib.Path(json.loads(out)["Dir"]) / "config" / "crd" / "volcano" / "bases"


def apply(plane: ControlPlane, obj: dict[str, Any], manager: str = "nasop-tests") -> dict[str, Any]:
    """Server-side apply (as `kubectl apply --server-side`): large CRDs have no size trouble."""
    meta = obj["metadata"]
    group_version = obj["apiVersion"]
    plural = {
        "CustomResourceDefinition": "customresourcedefinitions",
        "Queue": "queues",
        "Namespace": "namespaces",
    }[obj["kind"]]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return plane.request(
        "PATCH",
        f"{base}{ns}/{plural}/{meta['name']}?fieldManager={manager}&force=true",
        obj,
        content_type="application/apply-patch+yaml",
    )


def wait_established(plane: ControlPlane, name: str, timeout: float = 60) -> None:
    def established() -> bool:
        crd = plane.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        )
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        return conds.get("Established") == "True"

    poll(established, timeout, f"CRD {name} not established", interval=0.1)


def install_volcano_crds(plane: ControlPlane, everything: bool = False) -> list[str]:
    """The CRDs trial jobs need and a ``default`` Queue; ``everything``: all of Volcano's CRDs, as
    its scheduler waits for informers of each (NUMA topologies, HyperNodes, ...) before it runs."""
    names = []
    folder = volcano_crd_dir()
    files = sorted(p.name for p in folder.glob("*.yaml")) if everything else VOLCANO_CRDS
    for file in files:
        crd = yaml.safe_load((folder / file).read_text())
        apply(plane, crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_established(plane, name)
    apply(
        plane,
        {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "Queue",
            "metadata": {"name": "default"},
            "spec": {"weight": 1, "reclaimable": True},
        },
    )
    return names


def helm_install(
    plane: ControlPlane,
    kubeconfig: pathlib.Path,
    release: Release,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`helm install RELEASE charts/nasop -n NAMESPACE --create-namespace` through Helm's SDK."""
    import helm_python as helm

    helm.disable_logging()
    chart_values = {
        "rbac": {"scope": release.scope, "trialSchedulers": ["volcano", "job"]},
        "watchNamespaces": [WATCHED],
        "tests": {"enabled": False},
        **(values or {}),
    }
    with (
        helm.Config(kubeconfig_path=str(kubeconfig), namespace=release.namespace) as cfg,
        helm.Chart.load(CHART_DIR) as chart,
    ):
        return cfg.install(
            chart,
            release.name,
            chart_values,
            namespace=release.namespace,
            create_namespace=True,
            timeout=120,
        )


def service_account_token(plane: ControlPlane, release: Release, seconds: int = 7200) -> str:
    """A token for the release's ServiceAccount from the TokenRequest API (as a pod gets one)."""
    answer = plane.request(
        "POST",
        f"/api/v1/namespaces/{release.namespace}/serviceaccounts/{release.service_account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )
    return str(answer["status"]["token"])


def install_all(plane: ControlPlane) -> dict[str, str]:
    """Volcano's CRDs, both releases of the chart; returns a token per RBAC scope.

    Run it as the control plane's ``before_controllers`` and check :func:`wait_garbage_collector`
    once the controllers run."""
    install_volcano_crds(plane)
    tokens = {}
    for scope, release in RELEASES.items():
        helm_install(plane, plane.admin_kubeconfig_path, release)
        tokens[scope] = service_account_token(plane, release)
    for crd in (
        "nasexperiments.nasop.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    ):
        wait_established(plane, crd)
    # an Established CRD may answer 429 while its storage initializes: plane.request retries it
    return tokens


def wait_garbage_collector(plane: ControlPlane, timeout: float = 90) -> None:
    """The garbage collector learns of new CRDs from discovery (every 30 s): wait until it
    collects a ConfigMap owned by a deleted NASExperiment and one owned by a deleted Volcano Job,
    as on a cluster where nasop and Volcano were installed a while ago."""
    ns = "nasop-gc-probe"
    apply(plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    owners = [
        (
            "/apis/nasop.dev/v1alpha1",
            "nasexperiments",
            {
                "apiVersion": "nasop.dev/v1alpha1",
                "kind": "NASExperiment",
                "metadata": {"name": "probe"},
                "spec": yaml.safe_load((REPO / "examples" / "quick.yaml").read_text())["spec"],
            },
        ),
        (
            "/apis/batch.volcano.sh/v1alpha1",
            "jobs",
            {
                "apiVersion": "batch.volcano.sh/v1alpha1",
                "kind": "Job",
                "metadata": {"name": "probe"},
                "spec": {
                    "tasks": [
                        {
                            "name": "t",
                            "replicas": 1,
                            "template": {"spec": {"containers": [{"name": "c", "image": "probe"}]}},
                        }
                    ]
                },
            },
        ),
    ]
    dependents = []
    for base, plural, owner in owners:
        made = plane.request("POST", f"{base}/namespaces/{ns}/{plural}", owner)
        ref = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": "probe",
            "uid": made["metadata"]["uid"],
        }
        name = f"probe-{plural}"
        plane.request(
            "POST",
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": name, "ownerReferences": [ref]}},
        )
        plane.request("DELETE", f"{base}/namespaces/{ns}/{plural}/probe")
        dependents.append(name)

    def collected(name: str) -> bool:
        try:
            plane.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        return False

    deadline = time.monotonic() + timeout
    for name in dependents:
        poll(
            functools.partial(collected, name),
            deadline - time.monotonic(),
            f"the garbage collector did not collect {name}",
        )


__all__ = [
    "RELEASES",
    "ApiError",
    "Release",
    "apply",
    "helm_install",
    "install_all",
    "install_volcano_crds",
    "service_account_token",
    "volcano_crd_dir",
    "wait_established",
    "wait_garbage_collector",
]


def install_operator(plane: Any, operator_image: str) -> None:
    """Before the controllers start: Volcano's CRDs and the chart with its defaults but for the
    image and host network (no pod network reaches the API server on 127.0.0.1): no storage.
    The tests' node and `make cluster` both install it this way."""
    import controlplane

    install_volcano_crds(plane, everything=True)
    repository, tag = operator_image.split(":")
    helm_install(
        plane,
        plane.admin_kubeconfig_path,
        RELEASES["cluster"],
        {
            "watchNamespaces": [],
            "hostNetwork": True,
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "health": {"port": controlplane.free_port()},
            "metrics": {"port": controlplane.free_port()},
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
            "extraEnv": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(plane.port)},
            ],
        },
    )
