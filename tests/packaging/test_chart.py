"""The Helm chart: lint, render per values variant, Kubernetes schema validity, values schema,
security context, probes, storage, monitoring, NOTES and the `helm test` hook.

Rendering uses the embedded Helm engine (see conftest.py); manifests are validated against the
Kubernetes OpenAPI schemas that `kubernetes-validate` ships, in strict mode (unknown fields fail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_helpers import (
    CHART_DIR,
    NAMESPACE,
    REPO_ROOT,
    VARIANTS,
    Manifest,
    assert_rejected_once,
    of_kind,
    one,
    parse_manifests,
    strip_template_key,
    variant_values,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
K8S_VERSIONS = ["1.25.0", "1.33.0"]

#: Kinds served by CRDs of other projects, which kubernetes-validate has no schema for.
CRD_BACKED_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

Render = Callable[[dict[str, Any] | None], dict[str, str]]


def deployment(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment")


def operator_container(objects: list[Manifest]) -> Manifest:
    (container,) = deployment(objects)["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ---------------------------------------------------------------- metadata and lint


def test_chart_metadata(chart: Any) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "nasop"
    assert meta["appVersion"] == "0.1.0"
    assert meta["kubeVersion"].startswith(">=1.25")
    assert meta.get("type", "application") == "application"


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("kube_version", ["v1.25.0", "v1.33.0"])
def test_lint_strict_is_clean(variant: str, kube_version: str) -> None:
    report = helm.lint(
        str(CHART_DIR),
        variant_values(variant),
        strict=True,
        namespace=NAMESPACE,
        kube_version=kube_version,
    )
    # severity 1 is INFO ("icon is recommended": we have no hosted icon); strict fails on >= 2
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# ---------------------------------------------------------------- rendering per variant


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_every_manifest_validates(
    manifests: dict[str, list[Manifest]], variant: str, k8s_version: str
) -> None:
    skipped = []
    for obj in manifests[variant]:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_BACKED_KINDS:
            skipped.append(key)  # no schema shipped; structure checked in test_service_monitor
            continue
        try:
            kubernetes_validate.validate(strip_template_key(obj), k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['__template__']} {obj['kind']}: {path}: {e.message}")
    if variant == "monitoring":
        assert skipped == [("monitoring.coreos.com/v1", "ServiceMonitor")]


def test_default_render_kinds(manifests: dict[str, list[Manifest]]) -> None:
    kinds = sorted(o["kind"] for o in manifests["default"])
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "Pod",  # the helm test hook
        ]
    )


def test_namespaced_objects_land_in_release_namespace(manifests: dict[str, list[Manifest]]) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for obj in manifests["default"]:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_common_labels_on_every_object(manifests: dict[str, list[Manifest]]) -> None:
    for variant, objects in manifests.items():
        for obj in objects:
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "nasop", (variant, obj["kind"])
            assert labels["app.kubernetes.io/instance"] == "nasop"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == "nasop-0.1.0"


def test_fullname_override_and_truncation(render: Render) -> None:
    objects = parse_manifests(render({"fullnameOverride": "x" * 80}))
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63


def test_deployment_defaults(manifests: dict[str, list[Manifest]]) -> None:
    dep = deployment(manifests["default"])
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "nasop",
        "app.kubernetes.io/instance": "nasop",
    }
    pod = spec["template"]["spec"]
    assert (
        pod["serviceAccountName"] == one(manifests["default"], "ServiceAccount")["metadata"]["name"]
    )
    container = operator_container(manifests["default"])
    assert container["image"] == "nasop-operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == [
        "operator",
        "--liveness-port=8080",
        "--metrics-port=9090",
        "--log-root=/logs",
    ]
    env = env_of(container)
    assert env["WATCH_NAMESPACES"] == ""
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["resources"]["requests"]["memory"] == "1Gi"


def test_deployment_values_flow_through(render: Render) -> None:
    values = {
        "replicaCount": 0,
        "image": {
            "repository": "registry.example/nasop-operator",
            "tag": "0.1.0-rc1",
            "pullPolicy": "Always",
        },
        "watchNamespaces": ["ml", "research"],
        "health": {"port": 8181},
        "metrics": {"port": 9191},
        "extraEnv": [{"name": "NASOP_EXTRA", "value": "1"}],
        "extraArgs": ["--verbose"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        "podAnnotations": {"example.com/a": "b"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
    }
    objects = parse_manifests(render(values))
    dep = deployment(objects)
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 0
    container = operator_container(objects)
    assert container["image"] == "registry.example/nasop-operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == [
        "operator",
        "--liveness-port=8181",
        "--metrics-port=9191",
        "--log-root=/logs",
        "--verbose",
    ]
    env = env_of(container)
    assert env["WATCH_NAMESPACES"] == "ml,research"
    assert env["NASOP_EXTRA"] == "1"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8181,
        "metrics": 9191,
    }
    assert container["resources"]["requests"] == {
        "cpu": "1",
        "memory": "2Gi",
    }  # limits keep their default
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
    assert pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["affinity"] == values["affinity"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["annotations"] == {"example.com/a": "b"}
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 9191


# ---------------------------------------------------------------- security


def _assert_restricted(pod_spec: Manifest, what: str) -> None:
    psc = pod_spec["securityContext"]
    assert psc["runAsNonRoot"] is True, what
    assert psc["runAsUser"] != 0, what
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, what
    assert "hostNetwork" not in pod_spec and "hostPID" not in pod_spec, what
    for container in pod_spec["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True, what
        assert sc["allowPrivilegeEscalation"] is False, what
        assert sc["readOnlyRootFilesystem"] is True, what
        assert sc.get("privileged", False) is False, what
        assert sc["capabilities"] == {"drop": ["ALL"]}, what
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
        # a read-only root needs a writable /tmp, and it must be an emptyDir
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, what
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], what
    for volume in pod_spec["volumes"]:
        assert "hostPath" not in volume, what


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_operator_pod_is_restricted(manifests: dict[str, list[Manifest]], variant: str) -> None:
    _assert_restricted(deployment(manifests[variant])["spec"]["template"]["spec"], "operator")


def test_test_pod_is_restricted(manifests: dict[str, list[Manifest]]) -> None:
    _assert_restricted(one(manifests["default"], "Pod")["spec"], "helm test pod")


def test_operator_home_and_caches_point_at_tmp(manifests: dict[str, list[Manifest]]) -> None:
    env = env_of(operator_container(manifests["default"]))
    assert env["HOME"] == "/tmp"
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["MPLCONFIGDIR"].startswith("/tmp/")


def test_service_account_token_only_where_needed(manifests: dict[str, list[Manifest]]) -> None:
    assert (
        deployment(manifests["default"])["spec"]["template"]["spec"]["automountServiceAccountToken"]
        is True
    )
    assert one(manifests["default"], "Pod")["spec"]["automountServiceAccountToken"] is False


# ---------------------------------------------------------------- probes


def test_probes_hit_healthz_on_health_port(manifests: dict[str, list[Manifest]]) -> None:
    container = operator_container(manifests["default"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container[probe]["periodSeconds"] >= 1
    assert container["livenessProbe"]["initialDelaySeconds"] >= 10  # importing Ax takes seconds


def test_probes_can_be_disabled(render: Render) -> None:
    objects = parse_manifests(
        render({"livenessProbe": {"enabled": False}, "readinessProbe": {"enabled": False}})
    )
    container = operator_container(objects)
    assert "livenessProbe" not in container and "readinessProbe" not in container


# ---------------------------------------------------------------- storage


def _logs_volume(objects: list[Manifest]) -> Manifest:
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    return volumes["logs"]


def test_an_enabled_log_claim_is_rwx(render: Render) -> None:
    objects = parse_manifests(render({"logs": {"persistence": {"enabled": True}}}))
    pvc = one(objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in pvc["spec"]  # cluster default
    assert _logs_volume(objects)["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in operator_container(objects)["volumeMounts"]}
    assert mounts["logs"] == "/logs"


@pytest.mark.parametrize(("storage_class", "expected"), [("nfs-client", "nfs-client"), ("-", "")])
def test_log_claim_storage_class(render: Render, storage_class: str, expected: str) -> None:
    objects = parse_manifests(
        render(
            {
                "logs": {
                    "persistence": {"enabled": True, "storageClass": storage_class, "size": "50Gi"}
                }
            }
        )
    )
    pvc = one(objects, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == expected
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_existing_claim_is_mounted_and_no_pvc_rendered(
    manifests: dict[str, list[Manifest]],
) -> None:
    objects = manifests["existing-claim"]
    assert not of_kind(objects, "PersistentVolumeClaim")
    assert _logs_volume(objects)["persistentVolumeClaim"]["claimName"] == "nasop-logs"


def test_existing_claim_wins_over_persistence(render: Render) -> None:
    objects = parse_manifests(
        render({"logs": {"existingClaim": "shared", "persistence": {"enabled": True}}})
    )
    assert not of_kind(objects, "PersistentVolumeClaim")
    assert _logs_volume(objects)["persistentVolumeClaim"]["claimName"] == "shared"


def test_by_default_no_storage_is_needed(manifests: dict[str, list[Manifest]]) -> None:
    """Metrics travel through the pods' logs: no claim, an emptyDir, and no warning."""
    objects = manifests["default"]
    assert not of_kind(objects, "PersistentVolumeClaim")
    assert _logs_volume(objects) == {"name": "logs", "emptyDir": {}}


# ---------------------------------------------------------------- metrics


def test_metrics_service_selects_only_the_operator_pod(
    manifests: dict[str, list[Manifest]],
) -> None:
    objects = manifests["default"]
    selector = one(objects, "Service")["spec"]["selector"]
    operator_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    test_pod_labels = one(objects, "Pod")["metadata"]["labels"]
    assert selector.items() <= operator_labels.items()
    assert not selector.items() <= test_pod_labels.items()
    assert one(objects, "Service")["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_metrics_can_be_disabled(render: Render) -> None:
    out = render({"metrics": {"enabled": False}})
    assert not of_kind(parse_manifests(out), "Service")
    # the test pod then only checks the CLI
    assert "urlopen" not in out["nasop/templates/tests/test-operator.yaml"]


def test_service_monitor(manifests: dict[str, list[Manifest]]) -> None:
    assert not of_kind(manifests["default"], "ServiceMonitor")
    objects = manifests["monitoring"]
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


# ---------------------------------------------------------------- values schema


def _schema_nodes(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, subschema) that declares a key: properties, items and definitions."""
    found: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(node, dict):
        return found
    for name, sub in node.get("properties", {}).items():
        found.append((f"{path}.{name}", sub))
        found += _schema_nodes(sub, f"{path}.{name}")
    for name, sub in node.get("definitions", {}).items():
        found.append((f"{path}#{name}", sub))
        found += _schema_nodes(sub, f"{path}#{name}")
    if isinstance(node.get("items"), dict):
        found += _schema_nodes(node["items"], f"{path}[]")
    return found


def test_schema_is_draft07_and_describes_every_key(chart: Any) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    undocumented = [path for path, sub in _schema_nodes(schema) if not sub.get("description")]
    assert not undocumented, undocumented
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(schema)
    # defaults and every ci/ variant pass the schema, as checked by plain jsonschema too
    for variant in VARIANTS:
        jsonschema.Draft7Validator(schema).validate(chart.merge_values(variant_values(variant)))


def test_schema_and_values_have_the_same_top_level_keys(chart: Any) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert set(schema["properties"]) == set(chart.values)


def _param_paths() -> set[str]:
    text = (CHART_DIR / "values.yaml").read_text()
    return set(re.findall(r"^\s*## @param (\S+) ", text, flags=re.MULTILINE))


def test_every_value_has_a_param_doc(chart: Any) -> None:
    params = _param_paths()
    missing: list[str] = []

    def walk(values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            path = f"{prefix}{key}"
            if path in params:
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{path}.")
            else:
                missing.append(path)

    walk(chart.values, "")
    assert not missing, f"values.yaml keys without '## @param': {missing}"

    def exists(path: str) -> bool:
        node: Any = chart.values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    stale = sorted(p for p in params if not exists(p))
    assert not stale, f"'## @param' lines naming no key: {stale}"


BAD_VALUES = {
    "negative replicas": {"replicaCount": -1},
    "bad pullPolicy": {"image": {"pullPolicy": "Sometimes"}},
    "unknown top-level key": {"replicas": 2},
    "unknown image key": {"image": {"registry": "docker.io"}},
    "bad rbac scope": {"rbac": {"scope": "everywhere"}},
    "port zero": {"metrics": {"port": 0}},
    "port too high": {"health": {"port": 70000}},
    "port as string": {"health": {"port": "8080"}},
    "bad namespace name": {"watchNamespaces": ["Not_A_Namespace"]},
    "duplicate namespaces": {"watchNamespaces": ["ml", "ml"]},
    "bad quantity": {"logs": {"persistence": {"size": "ten gigs"}}},
    "bad access mode": {"logs": {"persistence": {"accessModes": ["ReadWriteSometimes"]}}},
    "relative mount path": {"logs": {"mountPath": "logs"}},
    "removed key": {"logLevel": "debug"},
    "bad strategy": {"updateStrategy": {"type": "BlueGreen"}},
    "env without name": {"extraEnv": [{"value": "x"}]},
    "bad service type": {"metrics": {"service": {"type": "ExternalName"}}},
    "bad scrape interval": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "zero probe period": {"livenessProbe": {"periodSeconds": 0}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(chart: Any, render: Render, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    with pytest.raises(helm.HelmValuesError):  # install/template check the schema too
        render(values)


# ---------------------------------------------------------------- validateValues


VALIDATION_CASES = {
    "namespaced without namespaces": (
        {"rbac": {"scope": "namespaced"}},
        ["rbac.scope=namespaced needs watchNamespaces"],
    ),
    "service monitor without metrics service": (
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        ["metrics.serviceMonitor.enabled=true needs metrics.enabled=true"],
    ),
    "same port twice": (
        {"health": {"port": 9090}},
        ["health.port and metrics.port must differ"],
    ),
    "all at once, one failure": (
        {
            "rbac": {"scope": "namespaced"},
            "health": {"port": 9090},
            "metrics": {"enabled": False, "serviceMonitor": {"enabled": True}},
        },
        ["rbac.scope=namespaced", "metrics.serviceMonitor.enabled", "must differ"],
    ),
}


@pytest.mark.parametrize(
    ("values", "messages"), VALIDATION_CASES.values(), ids=list(VALIDATION_CASES)
)
def test_validate_values_fails_once_with_every_message(
    render: Render, values: dict[str, Any], messages: list[str]
) -> None:
    assert_rejected_once(render, values, messages)


def test_namespaced_scope_without_rbac_needs_no_namespaces(render: Render) -> None:
    objects = parse_manifests(render({"rbac": {"create": False, "scope": "namespaced"}}))
    assert not [
        o
        for o in objects
        if o["kind"] in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ]


# ---------------------------------------------------------------- NOTES and helm test


def test_notes_say_what_to_do_next(rendered: dict[str, dict[str, str]]) -> None:
    notes = rendered["default"]["nasop/templates/NOTES.txt"]
    assert "kubectl apply -n nasop-system -f" in notes
    assert "kubectl get nasx -n nasop-system -w" in notes
    assert "jsonpath='{range .status.paretoFront[*]}" in notes
    assert "helm test nasop -n nasop-system" in notes
    assert "kubectl apply --server-side --force-conflicts -f crds/nasexperiments.yaml" in notes
    assert "all namespaces" in notes
    assert "WARNING" not in notes


def test_notes_for_watched_namespaces_and_standbys(render: Render) -> None:
    notes = render({"watchNamespaces": ["ml", "research"], "replicaCount": 2})[
        "nasop/templates/NOTES.txt"
    ]
    assert "namespaces: ml,research" in notes
    assert "kubectl get nasx -n ml -w" in notes
    assert "WARNING: replicaCount=2" in notes


def test_helm_test_hook_pod(manifests: dict[str, list[Manifest]]) -> None:
    pod = one(manifests["default"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    script = container["args"][0]
    assert "nasop validate --help" in script
    assert "http://nasop-metrics.nasop-system.svc:9090/metrics" in script
    assert container["image"] == operator_container(manifests["default"])["image"]


def test_helm_test_can_be_disabled(render: Render) -> None:
    assert not of_kind(parse_manifests(render({"tests": {"enabled": False}})), "Pod")


# ---------------------------------------------------------------- CRDs


CRD_SOURCE = REPO_ROOT / "crds" / "nasexperiments.yaml"
CRD_CHART_COPY = CHART_DIR / "crds" / "nasexperiments.yaml"


def test_chart_crd_is_identical_to_generated_crd() -> None:
    if not CRD_SOURCE.exists():
        pytest.skip("crds/nasexperiments.yaml is not generated yet (`nasop crd` writes it)")
    assert CRD_CHART_COPY.exists(), "copy crds/nasexperiments.yaml to charts/nasop/crds/"
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        "charts/nasop/crds/nasexperiments.yaml differs from crds/nasexperiments.yaml: copy it again"
    )


def test_chart_crd_names(chart: Any) -> None:
    if not CRD_CHART_COPY.exists():
        pytest.skip("charts/nasop/crds/nasexperiments.yaml is not there yet")
    crds = [yaml.safe_load(c["data"]) for c in chart.crds]
    (crd,) = [c for c in crds if c["metadata"]["name"] == "nasexperiments.nasop.dev"]
    spec = crd["spec"]
    assert spec["group"] == "nasop.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "NASExperiment"
    assert spec["names"]["plural"] == "nasexperiments"
    assert "nasx" in spec["names"]["shortNames"]
    assert [v["name"] for v in spec["versions"] if v.get("storage")] == ["v1alpha1"]


# ---------------------------------------------------------------- the chart and the CLI agree


def test_operator_args_parse_with_the_real_cli(manifests: dict[str, list[Manifest]]) -> None:
    cli = pytest.importorskip("nasop.cli", reason="the nasop package is not importable")
    container = operator_container(manifests["default"])
    args = cli.build_parser().parse_args(container["args"])
    assert args.command == "operator"
    assert (args.liveness_port, args.metrics_port, args.log_root) == (8080, 9090, "/logs")


def test_helm_test_command_exists_in_the_cli() -> None:
    cli = pytest.importorskip("nasop.cli", reason="the nasop package is not importable")
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["validate", "--help"])
    assert info.value.code == 0
