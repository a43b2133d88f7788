"""The committed CRD is the one generated from nasop.spec, and every example validates against
it."""

from __future__ import annotations

import glob
import os

import jsonschema
import pytest
import yaml

from nasop import crd, spec
from openapi import openapi_to_jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRD_PATH = os.path.join(ROOT, "crds", "nasexperiments.yaml")


def test_committed_crd_matches_models():
    with open(CRD_PATH, encoding="utf-8") as fh:
        committed = fh.read()
    assert committed == crd.crd_yaml(), (
        "crds/ is stale: run `nasop crd -o crds/nasexperiments.yaml`"
    )


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def test_schema_is_structural():
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "title" not in node and "default" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "anyOf" not in node and "oneOf" not in node, path
        if "properties" in node or "items" in node:
            assert node.get("type") in ("object", "array"), path


def test_crd_surface():
    c = crd.crd()
    v = c["spec"]["versions"][0]
    assert c["spec"]["names"]["shortNames"] == ["nasx"]
    assert v["subresources"] == {"status": {}}
    cols = [col["name"] for col in v["additionalPrinterColumns"]]
    for name in ("Phase", "Trials", "Pareto", "Hypervolume", "Age"):
        assert name in cols
    props = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["searchSpace"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert "x-kubernetes-validations" not in props["budget"]


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True))
)
def test_examples_validate_against_crd_schema_and_models(path):
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    jsonschema.validate(doc, openapi_to_jsonschema(schema))
    spec.parse_manifest(doc)


def test_crd_schema_rejects_what_models_reject():
    schema = openapi_to_jsonschema(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    bad = {
        "apiVersion": "nasop.dev/v1alpha1",
        "kind": "NASExperiment",
        "metadata": {"name": "x"},
        "spec": {
            "searchSpace": [],
            "objectives": [{"metric": "a", "goal": "up"}],
            "budget": {"maxTrials": 0},
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


SHIPPED_CRDS = sorted(
    {
        *glob.glob(os.path.join(ROOT, "crds", "*.yaml")),
        *glob.glob(os.path.join(ROOT, "charts", "nasop", "crds", "*.yaml")),
    }
)


@pytest.mark.parametrize("path", SHIPPED_CRDS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_crds_load_into_the_kubernetes_client_model(path):
    """`apiextensions.k8s.io/v1` types every field (exclusive bounds are booleans, say): the
    official client's model refuses what an API server would refuse for the same reason."""
    from kubernetes.client import ApiClient, V1CustomResourceDefinition

    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    assert docs, path
    for doc in docs:
        assert (
            doc["apiVersion"] == "apiextensions.k8s.io/v1"
            and doc["kind"] == "CustomResourceDefinition"
        )
        model = ApiClient()._ApiClient__deserialize(doc, V1CustomResourceDefinition)
        assert model.metadata.name == doc["metadata"]["name"]


def test_exclusive_bounds_are_openapi_v3_booleans():
    """pydantic's `gt=0` is JSON Schema 2020's `exclusiveMinimum: 0`; the CRD says `minimum: 0`
    and `exclusiveMinimum: true`."""
    props = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    percentile = props["properties"]["earlyStopping"]["properties"]["percentile"]
    assert (percentile["minimum"], percentile["exclusiveMinimum"]) == (0, True)
    assert (percentile["maximum"], percentile["exclusiveMaximum"]) == (100, True)
    front = props["properties"]["earlyStopping"]["properties"]["frontProbability"]
    assert (front["minimum"], front["exclusiveMinimum"], front["maximum"]) == (0, True, 1)
    assert "front" in front["description"] and "step 0" in front["description"]
    cpu = props["properties"]["trial"]["properties"]["resources"]["properties"]["cpu"]
    assert (cpu["minimum"], cpu["exclusiveMinimum"]) == (0, True)
    for path, node in _walk(crd.crd()):
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(flag, False), bool), path
