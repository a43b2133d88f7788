"""The ConfigMap store against the real API server (tests/cluster): the split state round-trips,
each save creates at most one chunk and updates only the core (counted in the server's audit
log), every object is labelled and owned by the NASExperiment and goes with it, main's single
ConfigMap loads and continues in place, and a stale writer gets a conflict without changing a
chunk."""

from __future__ import annotations

import base64
import random
import time

import controlplane
import pytest
from ax.core.base_trial import TrialStatus
from state_builders import FIXTURE, assert_equal, grow, new_search

from nasop import errors, spec
from nasop.state import configmap, layout
from nasop.trials import registry
from stubs import manifest

pytestmark = pytest.mark.cluster

CONFIGMAPS = "v1/configmaps"


@pytest.fixture()
def api(cluster):
    import kubernetes.config

    client = kubernetes.config.new_client_from_config_dict(cluster.plane.admin_kubeconfig())
    yield client
    client.close()


def _owner(cluster, name):
    obj = cluster.create_object(
        "nasop.dev/v1alpha1/nasexperiments",
        {**manifest(name), "metadata": {"name": name}},
        "default",
    )
    return {
        "apiVersion": "nasop.dev/v1alpha1",
        "kind": "NASExperiment",
        "name": name,
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def _store(api, owner, chunk_trials=3):
    return configmap.ConfigMapStore(
        api, "default", registry=registry.bundle(), owner=owner, chunk_trials=chunk_trials
    )


def _state_objects(cluster, name):
    return {
        c["metadata"]["name"]: c
        for c in cluster.list_objects(CONFIGMAPS, "default")
        if c["metadata"]["name"].startswith(configmap.configmap_name(name))
    }


def _mark(cluster):
    """Where the audit log ends now (it is written in batches: wait one out)."""
    time.sleep(0.6)
    return len(cluster.plane.audit_events())


def _writes(cluster, name, since):
    """(verb, name) of each ConfigMap write of this state since the audit event `since`."""
    time.sleep(0.6)
    return [
        (c.verb, c.name)
        for c in cluster.audited_calls(controlplane.ADMIN, cluster.plane.audit_events()[since:])
        if c.resource == "configmaps"
        and c.verb in ("create", "update", "patch")
        and c.name.startswith(configmap.configmap_name(name))
    ]


def test_split_state_on_the_api_server(cluster, api, tmp_path):
    rnd = random.Random(0)
    owner = _owner(cluster, "split")
    s = new_search(tmp_path, "split")
    s.store = _store(api, owner)  # Search.save keeps the core's resourceVersion between saves
    grow(s, 7, rnd)
    mark = _mark(cluster)
    s.save()
    core = configmap.configmap_name("split")
    writes = _writes(cluster, "split", mark)
    assert sorted(v for v, _ in writes) == ["create", "create", "create"]  # two chunks, the core
    per_save = []
    for _ in range(6):
        grow(s, 1, rnd)
        mark = _mark(cluster)
        s.save()
        per_save.append(_writes(cluster, "split", mark))
    # each save updates the core; a chunk is created when three more trials have ended
    assert [sorted(v for v, _ in w) for w in per_save] == [
        ["update"],
        ["create", "update"],
        ["update"],
        ["update"],
        ["create", "update"],
        ["update"],
    ]
    assert all(n == core for w in per_save for v, n in w if v == "update")
    objects = _state_objects(cluster, "split")
    assert len(objects) == 1 + 13 // 3
    for obj in objects.values():
        meta = obj["metadata"]
        assert meta["ownerReferences"][0]["uid"] == owner["uid"]
        assert meta["labels"][spec.EXPERIMENT_LABEL] == "split"
        part = "core" if meta["name"] == core else "chunk"
        assert meta["labels"][configmap.PART_LABEL] == part
    listed = cluster.plane.request(
        "GET",
        f"/api/v1/namespaces/default/configmaps?labelSelector={spec.EXPERIMENT_LABEL}%3Dsplit",
    )
    assert len(listed["items"]) == len(objects)
    back = _store(api, owner).load(name="split")
    assert_equal(back, s.snapshot())
    # the NASExperiment goes: the garbage collector takes the core and every chunk
    cluster.delete_object("nasop.dev/v1alpha1/nasexperiments", "default", "split")
    deadline = time.monotonic() + 60
    while _state_objects(cluster, "split") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _state_objects(cluster, "split")
    s.close()


def test_main_single_configmap_loads_and_continues_in_place(cluster, api, tmp_path):
    """A ConfigMap as main's store wrote it (the fixture's bytes under the same key and name)."""
    owner = _owner(cluster, "v1state")
    name = configmap.configmap_name("v1state")
    cluster.create_object(
        CONFIGMAPS,
        {
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "nasop",
                    spec.EXPERIMENT_LABEL: "v1state",
                },
                "ownerReferences": [owner],
            },
            "binaryData": {configmap.KEY: base64.b64encode(FIXTURE.read_bytes()).decode()},
        },
        "default",
    )
    store = _store(api, owner, chunk_trials=2)
    snap = store.load(name="v1state")
    assert len(snap.experiment.trials) == 8 and snap.version is not None
    s = new_search(tmp_path, "v1state")

    class Holder:
        experiment, strategy, state = snap.experiment, snap.strategy, s.state

    grow(Holder, 1, random.Random(1))
    store.save(name="v1state", snapshot=snap)
    objects = _state_objects(cluster, "v1state")
    core = layout.from_bytes(base64.b64decode(objects[name]["binaryData"][configmap.KEY]))
    assert core["format"] == layout.FORMAT
    # 7 ended trials of the fixture and the new one: four chunks of 2; the running one in the core
    assert len(objects) == 1 + len(core["chunks"]) and len(core["chunks"]) == 4
    back = _store(api, owner).load(name="v1state")
    assert len(back.experiment.trials) == 9
    assert_equal(back, snap)
    s.close()


def test_a_stale_writer_gets_a_conflict_and_changes_no_chunk(cluster, api, tmp_path):
    rnd = random.Random(2)
    owner = _owner(cluster, "race")
    s = new_search(tmp_path, "race")
    grow(s, 4, rnd)
    grow(s, 1, rnd, TrialStatus.RUNNING)
    _store(api, owner).save(name="race", snapshot=s.snapshot())
    a, b = _store(api, owner), _store(api, owner)
    snap_a, snap_b = a.load(name="race"), b.load(name="race")

    class A:
        experiment, strategy, state = snap_a.experiment, snap_a.strategy, s.state

    class B:
        experiment, strategy, state = snap_b.experiment, snap_b.strategy, s.state

    grow(A, 3, rnd)  # a new leader seals a chunk of its own trials
    a.save(name="race", snapshot=snap_a)
    before = {
        n: o["binaryData"]
        for n, o in _state_objects(cluster, "race").items()
        if n != "race-nasop-state"
    }
    grow(B, 3, rnd)  # the old one, unaware, seals different trials under the same number
    with pytest.raises(errors.StateConflict):
        b.save(name="race", snapshot=snap_b)
    after = _state_objects(cluster, "race")
    assert all(after[n]["binaryData"] == data for n, data in before.items())
    # the core and B's chunk, named by its content: no core names it
    assert len(after) == len(before) + 2
    assert_equal(_store(api, owner).load(name="race"), snap_a)
    s.close()
