"""Trials as Jobs admitted by Kueue (``spec.trial.queue``) on the real control plane.

Kueue's controller manager, built from its Go module at the pinned release (tests/cluster/kueue.py),
runs beside the test control plane with its webhooks; a ClusterQueue has CPU quota for two trials
(each Job's pod requests 900m: TorchX reserves 100m of the trial's 1 CPU), and a LocalQueue in
``default`` points to it. The operator creates each trial's Job suspended with the queue label;
only Kueue unsuspends it; kube-controller-manager's Job controller then makes its pod, and the
kubelet player runs it. A search with parallelism 4 never runs more than 2 trials at once.
"""

from __future__ import annotations

import pathlib
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubelet
import kueue
import pytest
from scenario import EXP, HANDLERS, RBAC_BOTH, events, resource, wait_for, wait_phase

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE = "trials"


@pytest.fixture(scope="module")
def kueue_running(control_plane: Any) -> Iterator[None]:
    """Kueue's manager and webhooks for this module, with the queues of the tests."""
    plane = control_plane.plane
    with (
        tempfile.TemporaryDirectory(prefix="nasop-kueue-") as folder,
        kueue.running(plane, pathlib.Path(folder)),
    ):
        base = f"/apis/{KUEUE}"
        plane.request(
            "POST",
            f"{base}/resourceflavors",
            {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
        )
        plane.request(
            "POST",
            f"{base}/clusterqueues",
            {
                "apiVersion": KUEUE,
                "kind": "ClusterQueue",
                "metadata": {"name": QUEUE},
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu", "memory"],
                            "flavors": [
                                {
                                    "name": "default-flavor",
                                    "resources": [
                                        {
                                            "name": "cpu",
                                            "nominalQuota": "2",
                                        },  # two trials of 900m, not three
                                        {"name": "memory", "nominalQuota": "64Gi"},
                                    ],
                                }
                            ],
                        }
                    ],
                },
            },
        )
        yield
        for path in (f"{base}/clusterqueues/{QUEUE}", f"{base}/resourceflavors/default-flavor"):
            plane.request("DELETE", path)


def _local_queue(cluster: Any) -> None:
    """A LocalQueue in `default` (emptied after each test, so made per test)."""
    if cluster.get_object(f"{KUEUE}/localqueues", "default", QUEUE) is None:
        cluster.create_object(
            f"{KUEUE}/localqueues",
            {
                "apiVersion": KUEUE,
                "kind": "LocalQueue",
                "metadata": {"name": QUEUE, "namespace": "default"},
                "spec": {"clusterQueue": QUEUE},
            },
        )


@pytest.mark.asyncio
async def test_kueue_admits_two_trials_at_a_time_and_the_search_finishes(
    kueue_running, cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    _local_queue(cluster)
    suspended_seen: set[str] = set()
    stop = threading.Event()

    def watch_suspended() -> None:  # which Jobs ever waited suspended for Kueue
        while not stop.wait(0.1):
            for job in cluster.list_objects("batch/v1/jobs", "default"):
                if job["spec"].get("suspend"):
                    suspended_seen.add(job["metadata"]["name"])

    res = resource(
        tmp_path,
        "queued",
        budget={"maxTrials": 6, "parallelism": 4},
        optimizer={"method": "sobol", "seed": 0},
    )
    res["spec"]["trial"].update({"scheduler": "job", "queue": QUEUE})
    res["spec"]["trial"]["args"] = ["--sleep=1.0"]  # long enough for the queue to fill up
    watcher = threading.Thread(target=watch_suspended, daemon=True)
    watcher.start()
    try:
        with kubelet.KubeletPlayer(cluster, namespace="default") as player:
            await run_operator(modules=HANDLERS, watching=[EXP])
            cluster.create_object(EXP, res)
            obj = await wait_phase(cluster, "queued", {"Succeeded", "Failed"}, timeout=300)
    finally:
        stop.set()
        watcher.join()
    assert not player.errors
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert st["trials"]["completed"] == 6
    jobs = cluster.list_objects(
        "batch/v1/jobs", "default", label_selector="nasop.dev/experiment=queued"
    )
    assert len(jobs) == 6
    for job in jobs:
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == QUEUE
    # parallelism 4, quota 2: never more than 2 pods at once, and the queue was used to the full
    assert player.max_running == 2, player.max_running
    assert len(player.started) == 6
    # jobs really waited for Kueue: the first four are created together against a quota of two,
    # so two of them wait at least one trial's length (later ones wait only when the operator
    # launches them before a running trial ends, which depends on timing)
    assert len(suspended_seen) >= 2, suspended_seen
    workloads = cluster.list_objects(f"{KUEUE}/workloads", "default")
    assert len(workloads) >= 6  # Kueue's own record of each Job


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_a_trial_larger_than_the_quota_says_kueues_reason_and_fails_to_start(
    kueue_running, cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """A trial asking for more CPU than the ClusterQueue has: its Workload is never admitted.
    The Reconciling message and a TrialWaiting event carry Kueue's own reason; after
    spec.trial.startTimeout the trial fails with it, and the search fails (no trial started)."""
    _local_queue(cluster)
    res = resource(
        tmp_path, "huge", budget={"maxTrials": 1, "parallelism": 1}, optimizer={"method": "sobol"}
    )
    res["spec"]["trial"].update({"scheduler": "job", "queue": QUEUE, "startTimeout": "25s"})
    res["spec"]["trial"]["resources"] = {"cpu": 4, "memMB": 512}
    with kubelet.KubeletPlayer(cluster, namespace="default") as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)

        def said() -> dict[str, Any] | None:
            obj = cluster.get_object(EXP, "default", "huge") or {}
            for c in (obj.get("status") or {}).get("conditions") or []:
                if c["type"] == "Reconciling" and "WorkloadNotAdmitted" in c["message"]:
                    return obj
            return None

        obj = await wait_for(said, "Kueue's reason in the Reconciling message", 60)
        assert obj["status"]["trials"]["pending"] == 1
        done = await wait_phase(cluster, "huge", {"Succeeded", "Failed"}, timeout=120)
    assert not player.errors and not player.started  # never admitted, never ran
    [ev] = events(cluster, "TrialWaiting", "huge")
    assert "Kueue workload" in ev["message"] and "quota" in ev["message"], ev["message"]
    st = done["status"]
    assert st["phase"] == "Failed" and "no trial could start" in st["message"], st
    assert "WorkloadNotAdmitted" in st["message"]


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)  # the only scenario that creates a Service
async def test_a_two_replica_trial_is_admitted_whole_once_the_quota_has_room_for_both_pods(
    kueue_running, cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """`replicas: 2` as a Job: one Indexed Job of two pods, one Kueue workload. With room in the
    ClusterQueue for one of its pods only, Kueue admits none of them and the trial waits (not
    failed); once the quota holds both, both pods start together, rendezvous (torchrun's c10d,
    rank 0's host resolved to this host: the test's stand-in for cluster DNS) and finish."""
    _local_queue(cluster)
    res = resource(
        tmp_path, "gang", budget={"maxTrials": 1, "parallelism": 1}, optimizer={"method": "sobol"}
    )
    # 1.5 CPU a pod (1400m requested after TorchX's 100m): one fits the quota of 2, two do not
    res["spec"]["trial"].update({"scheduler": "job", "queue": QUEUE, "replicas": 2})
    res["spec"]["trial"]["resources"] = {"cpu": 1.5, "memMB": 512}
    started: dict[str, float] = {}
    rank0_hosts: set[str] = set()
    run = kubelet.run_command(timeout=150)

    def outcome(pod: dict[str, Any], cancelled: threading.Event, log: Any = None) -> Any:
        started[pod["metadata"]["name"]] = time.monotonic()
        container = pod["spec"]["containers"][0]
        for var in container["env"]:
            if var["name"] == "TORCHX_RANK0_HOST":
                rank0_hosts.add(f"{var['value']} subdomain={pod['spec'].get('subdomain')}")
                var["value"] = "localhost"  # what cluster DNS would answer on one host
        return run(pod, cancelled, log=log)

    cq = f"{KUEUE}/clusterqueues"
    try:
        with kubelet.KubeletPlayer(cluster, namespace="default", outcome=outcome) as player:
            await run_operator(modules=HANDLERS, watching=[EXP])
            cluster.create_object(EXP, res)

            def said() -> dict[str, Any] | None:
                obj = cluster.get_object(EXP, "default", "gang") or {}
                for c in (obj.get("status") or {}).get("conditions") or []:
                    if c["type"] == "Reconciling" and "WorkloadNotAdmitted" in c["message"]:
                        return obj
                return None

            held = await wait_for(said, "Kueue's reason in the Reconciling message", 60)
            assert held["status"]["phase"] == "Running" and held["status"]["trials"]["pending"] == 1
            [job] = cluster.list_objects(
                "batch/v1/jobs", "default", label_selector="nasop.dev/experiment=gang"
            )
            assert job["spec"]["suspend"] is True and job["spec"]["parallelism"] == 2
            [wl] = [
                w
                for w in cluster.list_objects(f"{KUEUE}/workloads", "default")
                if w["metadata"]["ownerReferences"][0]["name"] == job["metadata"]["name"]
            ]
            assert [p["count"] for p in wl["spec"]["podSets"]] == [2]  # one workload, two pods
            assert not player.started  # not one pod alone
            # room for both: Kueue admits the workload whole
            queue = cluster.get_object(cq, None, QUEUE)
            queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = "3"
            cluster.replace_object(cq, None, QUEUE, queue)
            done = await wait_phase(cluster, "gang", {"Succeeded", "Failed"}, timeout=180)
    finally:
        queue = cluster.get_object(cq, None, QUEUE)
        queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = "2"
        cluster.replace_object(cq, None, QUEUE, queue)
    assert not player.errors
    st = done["status"]
    assert st["phase"] == "Succeeded" and st["trials"]["completed"] == 1, st
    assert len(started) == 2 and max(started.values()) - min(started.values()) < 5, started
    # each pod sat in the experiment's headless Service's subdomain, told rank 0's name there
    name = job["metadata"]["name"]
    service = job["spec"]["template"]["spec"]["subdomain"]
    svc = cluster.get_object("v1/services", "default", service)
    assert svc is not None and svc["spec"]["clusterIP"] == "None", svc
    assert svc["spec"]["selector"] == {"nasop.dev/experiment-uid": done["metadata"]["uid"]}
    assert rank0_hosts == {f"{name}-0.{service} subdomain={service}"}, rank0_hosts
    assert [e for e in events(cluster, "TrialWaiting", "gang") if "quota" in e["message"]]
