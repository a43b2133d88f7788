"""The Kubernetes API emulator, checked over real HTTP with the clients the operator uses.

Each test gets a fresh emulator on a free 127.0.0.1 port (see conftest.py).
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import kopf
import kubernetes.client
import kubernetes.watch
import pytest
from kubernetes.client.exceptions import ApiException

import emulator as k8s
import volcano

pytestmark = [pytest.mark.operator, pytest.mark.timeout(60)]

NX = ("nasop.dev", "v1alpha1")
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def experiment(name: str | None = None, **spec: Any) -> dict[str, Any]:
    meta = {"name": name} if name else {"generateName": "exp-"}
    return {"apiVersion": "nasop.dev/v1alpha1", "kind": "NASExperiment", "metadata": meta,
            "spec": spec or {"budget": {"maxTrials": 2}}}


def custom(k8s_api: Any) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(k8s_api)


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def eventually(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check()`` on the test's loop until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -------------------------------------------------------------------------------- CRUD semantics


def test_crud_status_codes_and_metadata(k8s_api: Any) -> None:
    api = custom(k8s_api)
    created, code, _ = api.create_namespaced_custom_object_with_http_info(
        *NX, "default", "nasexperiments", {**experiment(), "status": {"phase": "Bogus"}})
    assert code == 201
    meta = created["metadata"]
    assert meta["name"].startswith("exp-") and len(meta["name"]) == len("exp-") + 5
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert "status" not in created  # the status subresource ignores status on create
    name = meta["name"]

    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(*NX, "default", "nasexperiments", experiment(name))
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        api.get_namespaced_custom_object(*NX, "default", "nasexperiments", "missing")
    assert exc.value.status == 404 and json.loads(exc.value.body)["reason"] == "NotFound"
    with pytest.raises(ApiException) as exc:  # a failed JSON-patch test op, as kopf sends them
        api.patch_namespaced_custom_object(
            *NX, "default", "nasexperiments", name,
            [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
             {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}],
            _content_type=k8s.JSON_PATCH)
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:  # strategic merge is not served for custom resources
        api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", name, {"spec": {}},
                                           _content_type=k8s.STRATEGIC_MERGE_PATCH)
    assert exc.value.status == 415

    listed = api.list_namespaced_custom_object(*NX, "default", "nasexperiments")
    assert listed["kind"] == "NASExperimentList" and [o["metadata"]["name"] for o in listed["items"]] == [name]

    # generation: bumped by spec changes only
    rv0 = meta["resourceVersion"]
    obj = api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", name,
                                             {"metadata": {"labels": {"team": "a"}}, "status": {"x": 1}})
    assert obj["metadata"]["generation"] == 1 and "status" not in obj
    assert int(obj["metadata"]["resourceVersion"]) > int(rv0)
    obj = api.patch_namespaced_custom_object_status(*NX, "default", "nasexperiments", name,
                                                    {"status": {"phase": "Running"}, "spec": {"no": 1}})
    assert obj["status"] == {"phase": "Running"} and obj["metadata"]["generation"] == 1
    assert obj["spec"] == {"budget": {"maxTrials": 2}}
    obj = api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", name,
                                             {"spec": {"budget": {"maxTrials": 3}}})
    assert obj["metadata"]["generation"] == 2 and obj["status"] == {"phase": "Running"}
    same = api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", name,
                                              {"spec": {"budget": {"maxTrials": 3}}})
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]  # no-op write
    obj = api.patch_namespaced_custom_object(  # a passing JSON patch
        *NX, "default", "nasexperiments", name,
        [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
         {"op": "replace", "path": "/spec/budget/maxTrials", "value": 4}],
        _content_type=k8s.JSON_PATCH)
    assert obj["spec"]["budget"]["maxTrials"] == 4 and obj["metadata"]["generation"] == 3

    # label selectors on lists
    api.create_namespaced_custom_object(*NX, "default", "nasexperiments", experiment("other"))
    names = lambda sel: [o["metadata"]["name"] for o in api.list_namespaced_custom_object(  # noqa: E731
        *NX, "default", "nasexperiments", label_selector=sel)["items"]]
    assert names("team=a") == [name] and names("!team") == ["other"]
    assert names("team in (a,b)") == [name] and sorted(names("")) == sorted([name, "other"])

    deleted, code, _ = api.delete_namespaced_custom_object_with_http_info(*NX, "default", "nasexperiments", name)
    assert code == 200 and deleted["metadata"]["name"] == name
    with pytest.raises(ApiException) as exc:
        api.delete_namespaced_custom_object(*NX, "default", "nasexperiments", name)
    assert exc.value.status == 404


def test_core_objects_and_events(k8s_api: Any) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "state"}, "data": {"a": "1"}})
    assert cm.metadata.resource_version and cm.metadata.uid  # typed clients need 201 + a body
    cm.data["a"] = "2"
    replaced = core.replace_namespaced_config_map("state", "default", cm)
    assert replaced.data == {"a": "2"}
    with pytest.raises(ApiException) as exc:  # the same stale body again
        core.replace_namespaced_config_map("state", "default", cm)
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
    event = core.create_namespaced_event("default", {
        "metadata": {"generateName": "nasop-"}, "involvedObject": {"kind": "ConfigMap", "name": "state"},
        "reason": "Test", "message": "hello", "type": "Normal"})
    assert event.metadata.name.startswith("nasop-")
    assert [n.metadata.name for n in core.list_namespace().items] == ["default"]


def test_resource_version_conflicts(k8s_api: Any) -> None:
    api = custom(k8s_api)
    obj = api.create_namespaced_custom_object(*NX, "default", "nasexperiments", experiment("rv"))
    stale = obj["metadata"]["resourceVersion"]
    api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", "rv", {"spec": {"x": 1}})
    for call in (
        lambda: api.patch_namespaced_custom_object(
            *NX, "default", "nasexperiments", "rv", {"metadata": {"resourceVersion": stale}, "spec": {"x": 2}}),
        lambda: api.replace_namespaced_custom_object(*NX, "default", "nasexperiments", "rv", obj),
        lambda: api.patch_namespaced_custom_object_status(
            *NX, "default", "nasexperiments", "rv", {"metadata": {"resourceVersion": stale}, "status": {}}),
    ):
        with pytest.raises(ApiException) as exc:
            call()
        assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
    current = api.get_namespaced_custom_object(*NX, "default", "nasexperiments", "rv")
    current["spec"] = {"x": 3}
    assert api.replace_namespaced_custom_object(*NX, "default", "nasexperiments", "rv", current)["spec"] == {"x": 3}
    del current["metadata"]["resourceVersion"]  # custom resources require it on update
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object(*NX, "default", "nasexperiments", "rv", current)
    assert exc.value.status == 422


def test_watch_honours_resource_version(emulator: k8s.Emulator, k8s_api: Any) -> None:
    api = custom(k8s_api)
    api.create_namespaced_custom_object(*NX, "default", "nasexperiments", experiment("a"))
    since = api.list_namespaced_custom_object(*NX, "default", "nasexperiments")["metadata"]["resourceVersion"]
    api.create_namespaced_custom_object(*NX, "default", "nasexperiments", experiment("b"))
    api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", "a", {"spec": {"x": 1}})
    api.create_namespaced_custom_object(*NX, "default", "nasexperiments",
                                        {**experiment("c"), "metadata": {"name": "c", "labels": {"k": "v"}}})

    def stream(**kwargs: Any) -> list[tuple[str, str]]:
        watch = kubernetes.watch.Watch()
        return [(e["type"], e["object"]["metadata"]["name"]) for e in watch.stream(
            api.list_namespaced_custom_object, *NX, "default", "nasexperiments", timeout_seconds=1, **kwargs)]

    assert stream(resource_version=since) == [("ADDED", "b"), ("MODIFIED", "a"), ("ADDED", "c")]
    assert sorted(stream()) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]  # no rv: the state
    assert stream(resource_version=since, label_selector="k=v") == [("ADDED", "c")]

    emulator.expire_resource_versions()
    url = f"{emulator.url}/apis/nasop.dev/v1alpha1/namespaces/default/nasexperiments?watch=true&resourceVersion={since}"
    with urllib.request.urlopen(url, timeout=5) as response:
        event = json.loads(response.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_finalizers_and_owner_reference_gc(emulator: k8s.Emulator, k8s_api: Any) -> None:
    api = custom(k8s_api)
    core = kubernetes.client.CoreV1Api(k8s_api)
    owner = api.create_namespaced_custom_object(*NX, "default", "nasexperiments", {
        **experiment("owner"), "metadata": {"name": "owner", "finalizers": ["nasop.dev/finalizer"]}})
    ref = {"apiVersion": "nasop.dev/v1alpha1", "kind": "NASExperiment", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True}
    core.create_namespaced_config_map("default", {"metadata": {"name": "owner-state", "ownerReferences": [ref]}})
    api.create_namespaced_custom_object("batch.volcano.sh", "v1alpha1", "default", "jobs", {
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "metadata": {"name": "trial-0", "ownerReferences": [ref], "finalizers": ["x/y"]}, "spec": {}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})

    marked = api.delete_namespaced_custom_object(*NX, "default", "nasexperiments", "owner")
    assert marked["metadata"]["deletionTimestamp"]  # finalizers hold it
    assert core.read_namespaced_config_map("owner-state", "default")
    api.patch_namespaced_custom_object(*NX, "default", "nasexperiments", "owner", {"metadata": {"finalizers": []}})
    assert emulator.get_object(k8s.NASEXPERIMENTS, "default", "owner") is None
    assert emulator.get_object("v1/configmaps", "default", "owner-state") is None  # collected
    job = emulator.get_object(k8s.VOLCANO_JOBS, "default", "trial-0")
    assert job["metadata"]["deletionTimestamp"]  # collected, but held by its own finalizer
    assert emulator.get_object("v1/configmaps", "default", "unrelated") is not None
    history = emulator.objects[k8s.NASEXPERIMENTS, "default", "owner"].history  # kmock's view works
    assert history[-1] is None and history[0]["metadata"]["name"] == "owner"


# -------------------------------------------------------------------------------- kopf


def toy_registry(log: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create(*NX, "nasexperiments", registry=registry, id="created")
    def created(patch: kopf.Patch, name: str, body: kopf.Body, **_: Any) -> str:
        log.append(f"created {name}")
        kopf.info(body, reason="Created", message=f"{name} is seen")  # posts a core/v1 Event
        patch.status["phase"] = "Created"
        return "done"  # kopf stores it as status.created

    @kopf.daemon(*NX, "nasexperiments", registry=registry, id="monitor", cancellation_timeout=0.5)
    async def monitor(patch: kopf.Patch, name: str, **_: Any) -> None:
        log.append(f"daemon {name}")
        patch.status["monitor"] = "seen"  # applied when this attempt returns

    @kopf.on.delete(*NX, "nasexperiments", registry=registry, id="deleted")
    def deleted(name: str, **_: Any) -> None:
        log.append(f"deleted {name}")

    return registry


def handled(emulator: k8s.Emulator, name: str) -> dict[str, Any] | None:
    obj = emulator.get_object(k8s.NASEXPERIMENTS, "default", name)
    status = (obj or {}).get("status") or {}
    done = status.get("phase") == "Created" and status.get("created") == "done" and status.get("monitor") == "seen"
    return obj if done and FINALIZER in obj["metadata"].get("finalizers", []) else None


@pytest.mark.asyncio
async def test_kopf_operator_lifecycle(emulator: k8s.Emulator, run_operator: Any) -> None:
    log: list[str] = []
    handle = await run_operator(toy_registry(log), watching=[k8s.NASEXPERIMENTS])
    emulator.create_object(k8s.NASEXPERIMENTS, {**experiment("toy"), "metadata": {"name": "toy", "namespace": "default"}})
    obj = await eventually(lambda: handled(emulator, "toy"), what="kopf to handle the object")
    assert obj["metadata"]["generation"] == 1
    status_patches = [r for r in emulator.call_records
                      if r.call == k8s.ApiCall("patch", "nasop.dev", "nasexperiments", "status", "default")]
    assert status_patches and all(r.status == 200 for r in status_patches)

    emulator.delete_object(k8s.NASEXPERIMENTS, "default", "toy")
    await eventually(lambda: emulator.get_object(k8s.NASEXPERIMENTS, "default", "toy") is None,
                     what="kopf to release the finalizer")
    assert {"created toy", "daemon toy", "deleted toy"} <= set(log)
    events = await eventually(lambda: emulator.list_objects("v1/events", "default"), what="a kopf event")
    assert events[0]["reason"] == "Created" and events[0]["involvedObject"]["name"] == "toy"

    started = time.monotonic()
    handle.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle.task
    assert time.monotonic() - started < 10


@pytest.mark.asyncio
async def test_kopf_recovers_from_faults(emulator: k8s.Emulator, kubeconfig: Any, run_operator: Any) -> None:
    log: list[str] = []
    handle = await run_operator(toy_registry(log), login="kubeconfig", watching=[k8s.NASEXPERIMENTS])

    patch_fault = emulator.inject("PATCH", "/nasexperiments/", 500, count=2)
    emulator.create_object(k8s.NASEXPERIMENTS, {**experiment("one"), "metadata": {"name": "one", "namespace": "default"}})
    await eventually(lambda: handled(emulator, "one"), what="kopf to retry through two 500s")
    assert patch_fault.hits == 2

    watch_fault = emulator.inject("GET", "watch=true", 500, count=1)
    assert emulator.drop_watches(k8s.NASEXPERIMENTS) >= 1
    await handle.wait_watching(k8s.NASEXPERIMENTS)
    emulator.create_object(k8s.NASEXPERIMENTS, {**experiment("two"), "metadata": {"name": "two", "namespace": "default"}})
    await eventually(lambda: handled(emulator, "two"), what="kopf to re-watch after a dropped stream")
    assert watch_fault.hits == 1
    assert any(r.status == 500 and r.call.verb == "watch" for r in emulator.call_records)

    await handle.stop()
    assert handle.task.done()
    await eventually(lambda: emulator.active_watches() == 0, timeout=5, what="the streams to close")


# -------------------------------------------------------------------------------- TorchX + Volcano


def test_torchx_kubernetes_scheduler_with_volcano_player(emulator: k8s.Emulator, k8s_api: Any) -> None:
    from torchx import specs
    from torchx.schedulers import kubernetes_scheduler

    scheduler = kubernetes_scheduler.create_scheduler("nasop-test", client=k8s_api)
    app = specs.AppDef("trial", roles=[specs.Role(
        "trainer", image="nasop-trainer:test", entrypoint=sys.executable,
        args=["-c", "import os; print('hello', os.environ['NASOP_TRIAL_INDEX'])"],
        env={"NASOP_TRIAL_INDEX": "7"})])
    cfg = {"queue": "default", "namespace": "default"}
    with volcano.VolcanoPlayer(emulator, volcano.run_command(), completing=True) as player:
        app_id = scheduler.submit(app, cfg)
        namespace, name = app_id.split(":")
        assert player.wait_for(namespace, name) == "Completed"
        described = scheduler.describe(app_id)
        assert described is not None and described.state == specs.AppState.SUCCEEDED
        assert described.roles_statuses[0].replicas[0].state == specs.AppState.SUCCEEDED
        assert "hello 7" in "".join(scheduler.log_iter(app_id, "trainer", 0))
        job = emulator.get_object(k8s.VOLCANO_JOBS, namespace, name)
        assert [c["status"] for c in job["status"]["conditions"]] == ["Pending", "Running", "Completing", "Completed"]

    with volcano.VolcanoPlayer(emulator, volcano.fail) as player:
        failed_id = scheduler.submit(app, cfg)
        player.wait_for(*failed_id.split(":"))
        assert scheduler.describe(failed_id).state == specs.AppState.FAILED

    scheduler.cancel(app_id)  # deletes the job; its pods go with it (ownerReferences)
    assert emulator.get_object(k8s.VOLCANO_JOBS, namespace, name) is None
    assert emulator.list_objects("v1/pods", namespace, label_selector=f"volcano.sh/job-name={name}") == []


def test_api_call_recorder(emulator: k8s.Emulator, k8s_api: Any) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}},
                                     _content_type=k8s.STRATEGIC_MERGE_PATCH)
    core.read_namespaced_config_map("c", "default")
    core.list_namespaced_config_map("default")
    with pytest.raises(ApiException):
        custom(k8s_api).get_namespaced_custom_object_status(*NX, "default", "nasexperiments", "none")
    core.delete_namespaced_config_map("c", "default")
    http_json(f"{emulator.url}/apis/nasop.dev/v1alpha1")  # discovery is not a resource call
    assert emulator.calls == [
        k8s.ApiCall("create", "", "configmaps", None, "default"),
        k8s.ApiCall("patch", "", "configmaps", None, "default"),
        k8s.ApiCall("get", "", "configmaps", None, "default"),
        k8s.ApiCall("list", "", "configmaps", None, "default"),
        k8s.ApiCall("get", "nasop.dev", "nasexperiments", "status", "default"),
        k8s.ApiCall("delete", "", "configmaps", None, "default"),
    ]
    assert [r.status for r in emulator.call_records] == [201, 200, 200, 200, 404, 200]
    assert ("GET", "/apis/nasop.dev/v1alpha1") in emulator.nonresource_calls
    assert emulator.rbac_rules() == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete", "get", "list", "patch"]},
        {"apiGroups": ["nasop.dev"], "resources": ["nasexperiments/status"], "verbs": ["get"]},
    ]


def test_injected_fault_then_recovery(emulator: k8s.Emulator, k8s_api: Any) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api)
    fault = emulator.inject("POST", "/configmaps", 409, count=1, message="try again")
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert exc.value.status == 409 and json.loads(exc.value.body)["message"] == "try again"
    assert core.create_namespaced_config_map("default", {"metadata": {"name": "c"}}).metadata.name == "c"
    assert fault.hits == 1
    with pytest.raises(urllib.error.HTTPError) as http_exc:  # unknown resources are 404s
        http_json(f"{emulator.url}/apis/nasop.dev/v1alpha1/namespaces/default/unknowns")
    assert http_exc.value.code == 404
    http_exc.value.close()
