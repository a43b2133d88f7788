"""nasop installed on a real API server the way a user installs it, and judged by that server.

The session's control plane (tests/conftest.py) got Volcano's CRDs from Volcano's Go module and
the chart by Helm's SDK (`helm install`, CRDs from charts/nasop/crds/) in both RBAC modes. Here:
what that left on the server, the examples applied, and bad manifests refused by the server itself
with the field in the message (what only the operator can judge ends as phase Invalid: see
tests/operator/test_operator.py::test_invalid_manifest_is_marked_invalid_and_others_still_run).
"""

from __future__ import annotations

import copy
import glob
import pathlib
from collections.abc import Iterator
from typing import Any

import install
import pytest
import yaml
from controlplane import ApiError

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
EXP = "/apis/nasop.dev/v1alpha1"
NAMESPACE = "nasop-examples"  # no operator watches it: the objects are only stored


def crd_names(plane: Any) -> set[str]:
    return {
        c["metadata"]["name"]
        for c in plane.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")[
            "items"
        ]
    }


def test_server_is_the_pinned_release(control_plane):
    version = control_plane.plane.request("GET", "/version")
    assert version["gitVersion"] == "v1.35.4" and version["minor"] == "35"


def test_chart_and_volcano_crds_are_established(control_plane):
    plane = control_plane.plane
    names = crd_names(plane)
    shipped = {
        yaml.safe_load(pathlib.Path(p).read_text())["metadata"]["name"]
        for p in glob.glob(str(REPO / "charts" / "nasop" / "crds" / "*.yaml"))
    }
    assert shipped == {
        "nasexperiments.nasop.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    assert (
        shipped
        | {
            "jobs.batch.volcano.sh",
            "queues.scheduling.volcano.sh",
            "podgroups.scheduling.volcano.sh",
            "commands.bus.volcano.sh",
        }
        <= names
    )
    served = plane.request("GET", f"{EXP}")["resources"]
    assert {"nasexperiments", "nasexperiments/status"} <= {r["name"] for r in served}
    nasx = next(r for r in served if r["name"] == "nasexperiments")
    assert nasx["shortNames"] == ["nasx"] and "nasop" in nasx["categories"]
    queue = plane.request("GET", "/apis/scheduling.volcano.sh/v1beta1/queues/default")
    assert queue["spec"]["weight"] == 1


@pytest.mark.parametrize("scope", sorted(install.RELEASES))
def test_helm_release_is_deployed_with_its_rbac(control_plane, scope):
    plane = control_plane.plane
    release = install.RELEASES[scope]
    ns = release.namespace
    secrets = plane.request("GET", f"/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm")
    (record,) = secrets["items"]
    assert record["metadata"]["labels"]["status"] == "deployed"
    assert record["metadata"]["labels"]["name"] == release.name
    deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{release.name}")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == release.service_account
    assert pod["securityContext"]["runAsNonRoot"] is True
    plane.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/{release.service_account}")
    if scope == "cluster":
        role = plane.request(
            "GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release.name}"
        )
    else:
        role = plane.request(
            "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/" + release.name
        )
        with pytest.raises(ApiError) as missing:
            plane.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release.name}")
        assert missing.value.code == 404
    assert any("nasexperiments" in rule.get("resources", []) for rule in role["rules"])


@pytest.mark.parametrize("scope", sorted(install.RELEASES))
def test_the_server_enforces_each_release_rbac(control_plane, scope):
    """The operator's token may read experiments in `default`, never Secrets; the namespaced
    release may not read experiments in another namespace."""
    plane, token = control_plane.plane, control_plane.tokens[scope]
    plane.request("GET", f"{EXP}/namespaces/default/nasexperiments", token=token)
    with pytest.raises(ApiError) as forbidden:
        plane.request("GET", "/api/v1/namespaces/default/secrets", token=token)
    assert forbidden.value.code == 403
    other = f"{EXP}/namespaces/kube-system/nasexperiments"
    if scope == "cluster":
        plane.request("GET", other, token=token)
    else:
        with pytest.raises(ApiError) as elsewhere:
            plane.request("GET", other, token=token)
        assert elsewhere.value.code == 403


@pytest.fixture()
def examples_namespace(control_plane) -> Iterator[str]:
    plane = control_plane.plane
    install.apply(plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    for obj in plane.request("GET", f"{EXP}/namespaces/{NAMESPACE}/nasexperiments")["items"]:
        plane.request(
            "DELETE", f"{EXP}/namespaces/{NAMESPACE}/nasexperiments/{obj['metadata']['name']}"
        )


def create(plane: Any, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """`kubectl create` as kubectl does it: unknown fields are an error (fieldValidation=Strict)."""
    return plane.request(
        "POST", f"{EXP}/namespaces/{namespace}/nasexperiments?fieldValidation=Strict", obj
    )


EXAMPLES = sorted(glob.glob(str(REPO / "examples" / "**" / "*.yaml"), recursive=True))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(pathlib.Path(p).relative_to(REPO)))
def test_every_example_is_accepted_unchanged(control_plane, examples_namespace, path):
    doc = yaml.safe_load(pathlib.Path(path).read_text())
    doc["metadata"].pop("namespace", None)
    stored = create(control_plane.plane, doc, examples_namespace)
    assert stored["spec"] == doc["spec"]  # nothing pruned, nothing defaulted


def _example() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "cluster" / "mnist-tutorial.yaml").read_text())
    doc["metadata"] = {"name": "bad"}
    return doc


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return doc


BAD = {
    "wrong type": (
        "spec.budget.maxTrials",
        "many",
        "spec.budget.maxTrials",
        "must be of type integer",
    ),
    "below the minimum": (
        "spec.budget.maxTrials",
        0,
        "spec.budget.maxTrials",
        "should be greater than or equal to 1",
    ),
    "exclusive maximum": (
        "spec.earlyStopping",
        {"metric": "val_acc", "percentile": 100},
        "spec.earlyStopping.percentile",
        "should be less than 100",
    ),
    "exclusive minimum": (
        "spec.trial.resources.cpu",
        0,
        "spec.trial.resources.cpu",
        "should be greater than 0",
    ),
    "unknown enum value": (
        "spec.objectives.0.goal",
        "up",
        "spec.objectives[0].goal",
        "Unsupported value",
    ),
    "unknown field": ("spec.budget.maxTrails", 5, "spec.budget.maxTrails", "unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifests_are_refused_by_the_server_naming_the_field(
    control_plane, examples_namespace, case
):
    path, value, field, words = BAD[case]
    with pytest.raises(ApiError) as refused:
        create(control_plane.plane, _set(_example(), path, value), examples_namespace)
    assert refused.value.code in (400, 422), refused.value
    assert field in refused.value.message and words in refused.value.message, refused.value.message


@pytest.mark.parametrize(
    "field", ["searchSpace", "objectives", "parameterConstraints", "outcomeConstraints"]
)
def test_the_search_definition_is_immutable_under_the_cel_rule(
    control_plane, examples_namespace, field
):
    plane = control_plane.plane
    doc = _example()
    doc["metadata"]["name"] = f"frozen-{field.lower()}"
    doc["spec"].setdefault("parameterConstraints", ["hidden_size_2 <= hidden_size_1"])
    doc["spec"].setdefault("outcomeConstraints", ["latency_ms <= 5"])
    create(plane, doc, examples_namespace)
    changed = {
        "searchSpace": doc["spec"]["searchSpace"][:-1],
        "objectives": doc["spec"]["objectives"][:1],
        "parameterConstraints": [],
        "outcomeConstraints": ["latency_ms <= 6"],
    }[field]
    url = f"{EXP}/namespaces/{examples_namespace}/nasexperiments/{doc['metadata']['name']}"
    with pytest.raises(ApiError) as refused:
        plane.request(
            "PATCH", url, {"spec": {field: changed}}, content_type="application/merge-patch+json"
        )
    assert refused.value.code == 422
    assert f"spec.{field}" in refused.value.message and "immutable" in refused.value.message
    # what may change mid-search, may
    patched = plane.request(
        "PATCH",
        url,
        {"spec": {"budget": {"maxTrials": 60}, "suspend": True}},
        content_type="application/merge-patch+json",
    )
    assert patched["spec"]["budget"]["maxTrials"] == 60 and patched["metadata"]["generation"] == 2
