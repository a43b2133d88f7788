"""kopf peering in the chart: several replicas elect one active operator.

With peering on (`peering.enabled=auto` and replicaCount > 1 or a RollingUpdate, or `true`) the
operator container gets NASOP_PEERING (the peering object's name) and POD_ID (its identity in the
object, from the downward API), and the chart renders the peering object: one ClusterKopfPeering
when the operator watches all namespaces, a KopfPeering in each watched namespace otherwise (the
kind kopf picks from `clusterwide`, see nasop.controller.main.run). The kopf.dev CRDs ship in the
chart's crds/ and must be the ones kopf looks for. Replicas without peering are rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_helpers import (
    CHART_DIR,
    NAMESPACE,
    Manifest,
    assert_rejected_once,
    of_kind,
    one,
    parse_manifests,
    strip_template_key,
)
from test_rbac import load_required, rules_cover

kubernetes_validate = pytest.importorskip("kubernetes_validate")

Render = Callable[[dict[str, Any] | None], dict[str, str]]

K8S_VERSIONS = ["1.25.0", "1.33.0"]
PEERING_KINDS = {"ClusterKopfPeering", "KopfPeering"}
PEERING_CRDS = {
    "clusterkopfpeerings.kopf.dev": "crds/clusterkopfpeerings.yaml",
    "kopfpeerings.kopf.dev": "crds/kopfpeerings.yaml",
}

#: Two replicas in each RBAC mode, plus the cluster RBAC mode watching named namespaces (kopf then
#: peers per namespace although the grant is a ClusterRole).
TWO_REPLICAS: dict[str, dict[str, Any]] = {
    "cluster": {"replicaCount": 2},
    "namespaced": {
        "replicaCount": 2,
        "rbac": {"scope": "namespaced"},
        "watchNamespaces": ["ml-a", "ml-b"],
    },
    "cluster-rbac-watching-namespaces": {"replicaCount": 2, "watchNamespaces": ["ml-a", "ml-b"]},
}
#: peering kind and the namespaces of its objects (None: cluster-scoped), per case
EXPECTED_OBJECTS = {
    "cluster": ("ClusterKopfPeering", [None]),
    "namespaced": ("KopfPeering", ["ml-a", "ml-b"]),
    "cluster-rbac-watching-namespaces": ("KopfPeering", ["ml-a", "ml-b"]),
}


def _container(objects: list[Manifest]) -> Manifest:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _env(objects: list[Manifest]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objects)["env"]}


def _peerings(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in PEERING_KINDS]


def _chart_crds(chart: Any) -> dict[str, Manifest]:
    crds = [yaml.safe_load(c["data"]) for c in chart.crds]
    return {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == "kopf.dev"}


# ---------------------------------------------------------------- off by default


def test_one_replica_has_no_peering(
    manifests: dict[str, list[Manifest]], rendered: dict[str, dict[str, str]]
) -> None:
    for variant, objects in manifests.items():
        env = _env(objects)
        assert "NASOP_PEERING" not in env and "POD_ID" not in env, variant
        assert "NASOP_PEERING_PRIORITY" not in env, variant
        assert not _peerings(objects), variant
    assert "kopf peering" not in rendered["default"]["nasop/templates/NOTES.txt"]


# ---------------------------------------------------------------- two replicas


@pytest.mark.parametrize("case", list(TWO_REPLICAS))
def test_two_replicas_get_the_peering_env_and_objects(render: Render, case: str) -> None:
    objects = parse_manifests(render(TWO_REPLICAS[case]))
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    env = _env(objects)
    assert env["NASOP_PEERING"] == "nasop"  # the release's full name
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # one priority for all replicas would make kopf pause every one of them
    assert "NASOP_PEERING_PRIORITY" not in env
    kind, namespaces = EXPECTED_OBJECTS[case]
    peerings = _peerings(objects)
    assert {p["kind"] for p in peerings} == {kind}
    assert sorted(p["metadata"].get("namespace") or "" for p in peerings) == sorted(
        n or "" for n in namespaces
    )
    for peering in peerings:
        assert peering["apiVersion"] == "kopf.dev/v1"
        assert peering["metadata"]["name"] == env["NASOP_PEERING"]
        assert "status" not in peering and "spec" not in peering  # kopf owns the status
        labels = peering["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "nasop"
        assert labels["app.kubernetes.io/component"] == "peering"


@pytest.mark.parametrize("case", list(TWO_REPLICAS))
@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_two_replica_renders_validate(
    chart: Any, render: Render, case: str, k8s_version: str
) -> None:
    """Built-in kinds by kubernetes-validate (strict); the peering objects by the schema of the
    chart's own kopf.dev CRDs, which kubernetes-validate checks as CustomResourceDefinitions."""
    jsonschema = pytest.importorskip("jsonschema")
    crds = _chart_crds(chart)
    schemas = {}
    for crd in crds.values():
        kubernetes_validate.validate(crd, k8s_version, strict=True)
        (version,) = crd["spec"]["versions"]
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    for obj in parse_manifests(render(TWO_REPLICAS[case])):
        obj = strip_template_key(obj)
        if obj["kind"] in PEERING_KINDS:
            jsonschema.Draft7Validator(schemas[obj["kind"]]).validate(obj)
            assert set(obj) == {"apiVersion", "kind", "metadata"}
        else:
            kubernetes_validate.validate(obj, k8s_version, strict=True)


@pytest.mark.parametrize("case", list(TWO_REPLICAS))
def test_rbac_grants_what_peering_needs(render: Render, case: str) -> None:
    """kopf lists/watches the peering kind and patches its keep-alives into the object."""
    objects = parse_manifests(render(TWO_REPLICAS[case]))
    kind, namespaces = EXPECTED_OBJECTS[case]
    resource = "clusterkopfpeerings" if kind == "ClusterKopfPeering" else "kopfpeerings"
    calls = [("kopf.dev", resource, verb) for verb in ("list", "watch", "patch")]
    assert set(calls) <= set(load_required())
    if TWO_REPLICAS[case].get("rbac", {}).get("scope") == "namespaced":
        roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role")}
        assert set(roles) == set(namespaces)
        for namespace in namespaces:
            assert rules_cover(roles[namespace]["rules"], calls) == [], namespace
    else:
        assert rules_cover(one(objects, "ClusterRole")["rules"], calls) == []


def test_the_operator_reads_the_rendered_env(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pytest.importorskip(
        "nasop.controller.settings", reason="the nasop package is not importable"
    )
    env = _env(parse_manifests(render({"replicaCount": 2, "peering": {"name": "nasop-ha"}})))
    monkeypatch.setenv("NASOP_PEERING", env["NASOP_PEERING"])
    monkeypatch.delenv("NASOP_PEERING_PRIORITY", raising=False)
    loaded = settings.Settings.load()
    assert loaded.peering == "nasop-ha"
    assert loaded.peering_priority is not None  # drawn per replica
    monkeypatch.delenv("NASOP_PEERING")
    assert settings.Settings.load().peering is None


# ---------------------------------------------------------------- the switch and the name


def test_peering_name_and_fullname(render: Render) -> None:
    named = parse_manifests(render({"replicaCount": 2, "peering": {"name": "team-a.nasop"}}))
    assert _env(named)["NASOP_PEERING"] == "team-a.nasop"
    assert one(named, "ClusterKopfPeering")["metadata"]["name"] == "team-a.nasop"
    overridden = parse_manifests(render({"replicaCount": 2, "fullnameOverride": "nas"}))
    assert _env(overridden)["NASOP_PEERING"] == "nas"


def test_rolling_update_turns_auto_peering_on(render: Render) -> None:
    objects = parse_manifests(render({"updateStrategy": {"type": "RollingUpdate"}}))
    assert _env(objects)["NASOP_PEERING"] == "nasop"
    assert one(objects, "ClusterKopfPeering")


def test_peering_can_be_forced_on_for_one_replica(render: Render) -> None:
    objects = parse_manifests(render({"peering": {"enabled": True}}))
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert _env(objects)["NASOP_PEERING"] == "nasop"
    assert one(objects, "ClusterKopfPeering")


def test_peering_off_with_zero_or_one_replica(render: Render) -> None:
    for values in ({"replicaCount": 0}, {"replicaCount": 1, "peering": {"enabled": False}}):
        objects = parse_manifests(render(values))
        assert "NASOP_PEERING" not in _env(objects) and not _peerings(objects), values


# ---------------------------------------------------------------- rejected values


REJECTED = {
    "replicas without peering": (
        {"replicaCount": 2, "peering": {"enabled": False}},
        ["replicaCount=2 needs kopf peering", "peering.enabled=auto (or true)", "replicaCount=1"],
    ),
    "rolling update without peering": (
        {"updateStrategy": {"type": "RollingUpdate"}, "peering": {"enabled": False}},
        ["updateStrategy.type=RollingUpdate", "needs kopf peering", "updateStrategy.type=Recreate"],
    ),
    "peering variables in extraEnv": (
        {
            "replicaCount": 2,
            "extraEnv": [{"name": "NASOP_PEERING", "value": "x"}, {"name": "POD_ID", "value": "y"}],
        },
        ["extraEnv sets NASOP_PEERING", "extraEnv sets POD_ID", "peering.name"],
    ),
    "one priority for every replica": (
        {"replicaCount": 3, "extraEnv": [{"name": "NASOP_PEERING_PRIORITY", "value": "100"}]},
        [
            "extraEnv sets NASOP_PEERING_PRIORITY with replicaCount=3",
            "pauses all peers of equal priority",
        ],
    ),
}


@pytest.mark.parametrize(("values", "messages"), REJECTED.values(), ids=list(REJECTED))
def test_unsafe_replica_values_are_rejected(
    render: Render, values: dict[str, Any], messages: list[str]
) -> None:
    assert_rejected_once(render, values, messages)


def test_manual_peering_with_one_replica_is_left_alone(render: Render) -> None:
    """extraEnv NASOP_PEERING with the chart's peering off (one replica) is the user's business."""
    objects = parse_manifests(
        render(
            {
                "extraEnv": [
                    {"name": "NASOP_PEERING", "value": "mine"},
                    {"name": "NASOP_PEERING_PRIORITY", "value": "5"},
                ]
            }
        )
    )
    assert _env(objects)["NASOP_PEERING"] == "mine"
    assert not _peerings(objects)


BAD_PEERING_VALUES = {
    "enabled as a word": {"peering": {"enabled": "yes"}},
    "enabled as a string": {"peering": {"enabled": "true"}},
    "name with capitals": {"peering": {"name": "Nasop"}},
    "name with underscore": {"peering": {"name": "nasop_ha"}},
    "unknown key": {"peering": {"priority": 5}},
}


@pytest.mark.parametrize("values", BAD_PEERING_VALUES.values(), ids=list(BAD_PEERING_VALUES))
def test_schema_rejects_bad_peering_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))


# ---------------------------------------------------------------- CRDs, NOTES, lint


def test_peering_crds_are_the_ones_kopf_looks_for(chart: Any) -> None:
    references = pytest.importorskip("kopf._cogs.structs.references")
    crds = _chart_crds(chart)
    assert set(crds) == set(PEERING_CRDS)
    assert all((CHART_DIR / path).is_file() for path in PEERING_CRDS.values())
    kinds = (
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    )
    for selector, scope in kinds:
        crd = crds[f"{selector.any_name}.{selector.group}"]
        spec = crd["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["plural"]) == (
            selector.group,
            scope,
            selector.any_name,
        )
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == (
            selector.version,
            True,
            True,
        )
        # kopf patches its keep-alives into .status: no status subresource, unknown keys kept
        assert "subresources" not in version
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"] == {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }


def test_notes_show_the_peering(render: Render) -> None:
    notes = render({"replicaCount": 2})["nasop/templates/NOTES.txt"]
    assert 'kopf peering "nasop" is on (replicaCount=2)' in notes
    assert "kubectl get clusterkopfpeerings.kopf.dev nasop -o yaml" in notes
    assert (
        "kubectl apply -f charts/nasop/crds/kopfpeerings.yaml "
        "-f charts/nasop/crds/clusterkopfpeerings.yaml" in notes
    )
    notes = render(TWO_REPLICAS["namespaced"])["nasop/templates/NOTES.txt"]
    assert "kubectl get kopfpeerings.kopf.dev -n ml-a nasop -o yaml" in notes
    assert "kubectl get kopfpeerings.kopf.dev -n ml-b nasop -o yaml" in notes


@pytest.mark.parametrize("kube_version", ["v1.25.0", "v1.33.0"])
def test_lint_strict_with_peering(kube_version: str) -> None:
    values = yaml.safe_load((CHART_DIR / "ci" / "peering-values.yaml").read_text())
    assert values == {"replicaCount": 2}
    report = helm.lint(
        str(CHART_DIR), values, strict=True, namespace=NAMESPACE, kube_version=kube_version
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report
