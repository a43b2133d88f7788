"""A real single-node cluster: the operator installed by Helm from its image, trials as Volcano jobs
run by Volcano's scheduler and controller as pods of the trainer image on a kubelet
(tests/cluster/node.py).

Nothing here plays a part of Kubernetes: the test applies manifests and reads what the cluster does.
No storage exists on this cluster (no StorageClass, no PersistentVolume, no claim): trials report
through their pods' logs and termination messages, and hold no service-account token.
Timings (apply to first trial pod Running, per-trial overhead against the trainer's own run time,
the whole run) are printed (`-s`) for docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

import controlplane
import install
import pytest
import yaml
from controlplane import ApiError, ControlPlane, poll
from torchx.schedulers.kubernetes_scheduler import RESERVED_MILLICPU

import node
from nasop import results
from nasop.results import Collector

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]
REPO = pathlib.Path(__file__).resolve().parents[2]
NS = "nasop-system"
EXPERIMENTS = "/apis/nasop.dev/v1alpha1/namespaces/nasop-system/nasexperiments"
JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/nasop-system/jobs"
PODS = "/api/v1/namespaces/nasop-system/pods"


@dataclasses.dataclass
class NodeCluster:
    plane: ControlPlane
    node: node.Node


@pytest.fixture(scope="module")
def node_cluster(
    docker: Any, trainer_image: str, operator_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster]:
    missing = node.missing_tools()
    assert not missing, f"install {missing} (make test-deps: containerd, runc, CNI plugins, gcc)"
    before = node.sysctls()
    workdir = tmp_path_factory.mktemp("node")
    bin_dir = node.build()
    with controlplane.running(
        workdir / "plane", lambda p: install.install_operator(p, operator_image), with_node=True
    ) as plane:
        kubelet = node.Node(plane, bin_dir, workdir / "node")
        try:
            kubelet.start(
                before_kubelet=lambda n: n.import_images(docker, [trainer_image, operator_image])
            )
            print(
                f"\nnode Ready in {kubelet.ready_in:.1f} s (images imported before the kubelet "
                "started)",
                flush=True,
            )
            poll(
                lambda: _operator_running(plane, kubelet),
                300,
                "the operator pod is not Running",
                interval=1,
            )
            yield NodeCluster(plane, kubelet)
        finally:
            kubelet.stop()
    assert node.sysctls() == before, "the node changed the machine's kernel settings"


def _operator_running(plane: ControlPlane, kubelet: node.Node) -> bool:
    kubelet.check_alive()
    pods = plane.request("GET", f"{PODS}?labelSelector=app.kubernetes.io/component%3Doperator")
    return any(p["status"].get("phase") == "Running" for p in pods["items"])


def _experiment(name: str, max_trials: int, args: list[str], **budget: Any) -> dict[str, Any]:
    spec = yaml.safe_load((REPO / "examples" / "cluster" / "mnist-tutorial.yaml").read_text())[
        "spec"
    ]
    spec["searchSpace"] = [
        p if p["name"] != "epochs" else {**p, "bounds": [1, 3]} for p in spec["searchSpace"]
    ]
    spec["objectives"] = [
        {"metric": "val_acc", "goal": "maximize", "threshold": 0.5},
        {"metric": "num_params", "goal": "minimize", "threshold": 30000},
    ]
    spec["budget"] = {"maxTrials": max_trials, "parallelism": 2, "maxFailedTrials": 3, **budget}
    spec["optimizer"] = {"method": "auto", "initialTrials": min(4, max_trials), "seed": 0}
    spec["trial"] = {
        **spec["trial"],
        "image": "nasop-trainer:0.1.0",
        "args": args,
        "resources": {"cpu": 0.5, "memMB": 1024, "gpu": 0},
    }
    return {
        "apiVersion": "nasop.dev/v1alpha1",
        "kind": "NASExperiment",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _phase(plane: ControlPlane, name: str, phases: set[str]) -> dict[str, Any] | None:
    obj = plane.request("GET", f"{EXPERIMENTS}/{name}")
    return obj if (obj.get("status") or {}).get("phase") in phases else None


def _time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["val_acc"] >= b["val_acc"]
        and a["num_params"] <= b["num_params"]
        and (a["val_acc"] > b["val_acc"] or a["num_params"] < b["num_params"])
    )


def _trial_pods(plane: ControlPlane, experiment: str) -> list[dict[str, Any]]:
    pods = plane.request("GET", PODS)["items"]
    return [
        p for p in pods if p["metadata"].get("labels", {}).get("nasop.dev/experiment") == experiment
    ]


def test_a_search_runs_as_volcano_pods_on_a_real_node(node_cluster: NodeCluster) -> None:
    plane = node_cluster.plane
    applied = time.time()
    plane.request("POST", EXPERIMENTS, _experiment("digits", 6, ["--dataset", "digits"]))

    def first_running() -> float | None:
        node_cluster.node.check_alive()
        for pod in _trial_pods(plane, "digits"):
            if pod["status"].get("phase") in ("Running", "Succeeded"):
                return time.time()
        return None

    first = poll(first_running, 600, "no trial pod Running", interval=0.5)
    done = poll(
        lambda: _phase(plane, "digits", {"Succeeded", "Failed", "Invalid"}),
        1800,
        "the search did not finish",
        interval=2,
    )
    finished = time.time()
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["completed"] == 6, status["trials"]
    front = [p["metrics"] for p in status["paretoFront"]]
    assert front and not any(_dominates(a, b) for a in front for b in front if a is not b), front

    jobs = plane.request("GET", f"{JOBS}?labelSelector=nasop.dev/experiment%3Ddigits")["items"]
    pods = _trial_pods(plane, "digits")
    assert len(jobs) == 6 and len(pods) == 6, (
        [j["metadata"]["name"] for j in jobs],
        [p["metadata"]["name"] for p in pods],
    )
    assert all(p["spec"]["schedulerName"] == "volcano" for p in pods)
    assert all(p["spec"]["nodeName"] == node.NODE_NAME for p in pods)
    created = {j["metadata"]["name"]: _time(j["metadata"]["creationTimestamp"]) for j in jobs}
    overheads, runs = [], []
    for pod in pods:
        state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert state["exitCode"] == 0, state
        job = pod["metadata"]["annotations"]["volcano.sh/job-name"]
        overheads.append(_time(state["startedAt"]) - created[job])
        runs.append(_time(state["finishedAt"]) - _time(state["startedAt"]))
    _assert_reported_through_kubernetes(plane, status, pods)
    print(
        f"\napply -> first trial pod Running: {first - applied:.1f} s; per trial: job created -> "
        f"container started {sum(overheads) / len(overheads):.1f} s (max {max(overheads):.0f}), "
        f"trainer run {sum(runs) / len(runs):.1f} s; whole run (6 trials, parallelism 2): "
        f"{finished - applied:.0f} s",
        flush=True,
    )


def _assert_reported_through_kubernetes(
    plane: ControlPlane, status: dict[str, Any], pods: list[dict[str, Any]]
) -> None:
    """No claim anywhere; no trial pod holds a token and its service account may do nothing; the
    front's values are those the trainers wrote to their termination messages, and their logs'
    NASOP1 lines end at the same values."""
    assert plane.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims")["items"] == []
    assert plane.request("GET", "/api/v1/persistentvolumes")["items"] == []
    for pod in pods:
        assert pod["spec"].get("automountServiceAccountToken") is False, pod["spec"]
        mounts = [m["mountPath"] for m in pod["spec"]["containers"][0].get("volumeMounts") or []]
        assert not any("serviceaccount" in m for m in mounts), mounts
    account = pods[0]["spec"].get("serviceAccountName") or "default"
    for verb, resource, sub in [
        ("get", "pods", ""),
        ("list", "pods", ""),
        ("patch", "pods", "status"),
        ("patch", "nasexperiments", "status"),
        ("create", "configmaps", ""),
    ]:
        review = plane.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": f"system:serviceaccount:{NS}:{account}",
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}"],
                    "resourceAttributes": {
                        "namespace": NS,
                        "verb": verb,
                        "resource": resource,
                        "subresource": sub,
                        "group": "nasop.dev" if resource == "nasexperiments" else "",
                    },
                },
            },
        )
        assert review["status"]["allowed"] is False, (verb, resource, review["status"])
    by_trial = {int(p["metadata"]["labels"]["nasop.dev/trial"]): p for p in pods}
    for point in status["paretoFront"]:
        pod = by_trial[point["trial"]]
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        final = results.decode_final(message)
        assert not isinstance(final, str), message
        for name in ("val_acc", "num_params"):
            assert point["metrics"][name] == pytest.approx(final[None]["final"][name][1], rel=1e-9)
        lines = Collector(("val_acc", "num_params"))
        for line in plane.request_text(f"{PODS}/{pod['metadata']['name']}/log").splitlines():
            lines.feed_line(line)
        assert not lines.rejected and not lines.gaps
        assert lines.curve("val_acc")[-1] == final[None]["final"]["val_acc"]


def test_a_failing_trial_pod_is_a_failed_trial_with_its_stderr_and_delete_removes_pods(
    node_cluster: NodeCluster,
) -> None:
    plane = node_cluster.plane
    plane.request(
        "POST",
        EXPERIMENTS,
        _experiment(
            "broken",
            1,
            ["--dataset", "mnist", "--data-dir", "/tmp/no-mnist-here"],
            maxFailedTrials=0,
        ),
    )
    done = poll(
        lambda: _phase(plane, "broken", {"Succeeded", "Failed", "Invalid"}),
        600,
        "the broken search did not end",
        interval=1,
    )
    assert done["status"]["phase"] != "Invalid", done["status"]
    events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    failed = [
        e["message"]
        for e in events
        if e.get("reason") == "TrialFailed" and e["involvedObject"]["name"] == "broken"
    ]
    assert failed, done["status"]
    pods = _trial_pods(plane, "broken")
    assert pods and pods[0]["status"]["phase"] == "Failed"
    stderr = plane.request_text(f"{PODS}/{pods[0]['metadata']['name']}/log").strip()
    last_line = stderr.splitlines()[-1]
    assert last_line in failed[0], (last_line, failed)

    plane.request("DELETE", f"{EXPERIMENTS}/broken")

    def gone() -> bool:
        jobs = plane.request("GET", f"{JOBS}?labelSelector=nasop.dev/experiment%3Dbroken")["items"]
        return not jobs and not _trial_pods(plane, "broken")

    poll(gone, 120, "the experiment's jobs and pods were not removed", interval=1)
    with pytest.raises(ApiError) as err:
        plane.request("GET", f"{EXPERIMENTS}/broken")
    assert err.value.code == 404


def test_a_trial_whose_claim_does_not_exist_waits_stalls_and_starts_once_it_exists(
    node_cluster: NodeCluster, tmp_path: pathlib.Path
) -> None:
    """The trials mount a claim that does not exist (as a first-time user forgets it): Volcano's
    scheduler cannot place the pod, and the search says so (pending, not running; the
    scheduler's own words in Reconciling, then Stalled). Creating the claim lets the trial start;
    Stalled clears by itself and the search finishes."""
    plane = node_cluster.plane
    exp = _experiment("claimless", 1, ["--dataset", "digits"])
    exp["spec"]["trial"]["logs"] = {"claimName": "late-logs", "mountPath": "/logs"}
    exp["spec"]["trial"]["startTimeout"] = "4m"  # stalled after 2 minutes
    plane.request("POST", EXPERIMENTS, exp)
    # beside it, a search whose Volcano queue is too small for one trial pod (0.5 CPU)
    plane.request(
        "POST",
        "/apis/scheduling.volcano.sh/v1beta1/queues",
        {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "Queue",
            "metadata": {"name": "tiny"},
            "spec": {"weight": 1, "capability": {"cpu": "100m", "memory": "128Mi"}},
        },
    )
    queued = _experiment("queued", 1, ["--dataset", "digits"])
    queued["spec"]["trial"]["queue"] = "tiny"
    plane.request("POST", EXPERIMENTS, queued)

    def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == type_), {})

    def said() -> dict[str, Any] | None:
        node_cluster.node.check_alive()
        obj = plane.request("GET", f"{EXPERIMENTS}/claimless")
        return obj if "late-logs" in condition(obj, "Reconciling").get("message", "") else None

    obj = poll(said, 120, "the Reconciling message never named the missing claim", interval=1)
    assert (obj["status"]["trials"]["pending"], obj["status"]["trials"]["running"]) == (1, 0)
    print(f"\nReconciling: {condition(obj, 'Reconciling')['message']}", flush=True)

    def queue_said() -> dict[str, Any] | None:
        o = plane.request("GET", f"{EXPERIMENTS}/queued")
        return o if "PodGroup" in condition(o, "Reconciling").get("message", "") else None

    o = poll(queue_said, 120, "the Reconciling message never named the PodGroup", interval=1)
    message = condition(o, "Reconciling")["message"]
    print(f"Reconciling (queue tiny): {message}", flush=True)
    assert (o["status"]["trials"]["pending"], o["status"]["trials"]["running"]) == (1, 0)
    assert "tiny" in message, message  # Volcano's own scheduler holds the PodGroup
    assert not _trial_pods(plane, "queued")  # gang: no pod is created before admission
    plane.request("DELETE", f"{EXPERIMENTS}/queued")
    stalled = poll(
        lambda: (
            (o := plane.request("GET", f"{EXPERIMENTS}/claimless"))
            and condition(o, "Stalled").get("status") == "True"
            and o
        ),
        180,
        "the search never became Stalled",
        interval=2,
    )
    cond = condition(stalled, "Stalled")
    assert cond["reason"] == "TrialsCannotStart" and "late-logs" in cond["message"], cond

    # the user creates the claim (bound to a host folder the trainer, UID 10001, can write)
    folder = tmp_path / "late-logs"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    plane.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": "late-logs"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(folder)},
                "claimRef": {"namespace": NS, "name": "late-logs"},
            },
        },
    )
    plane.request(
        "POST",
        f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
        {
            "metadata": {"name": "late-logs"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "10Gi"}},
                "storageClassName": "",
                "volumeName": "late-logs",
            },
        },
    )
    done = poll(
        lambda: _phase(plane, "claimless", {"Succeeded", "Failed", "Invalid"}),
        600,
        "the search did not finish once the claim existed",
        interval=2,
    )
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert condition(done, "Stalled")["status"] == "False"
    events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    waiting = [
        e["message"]
        for e in events
        if e.get("reason") == "TrialWaiting" and e["involvedObject"]["name"] == "claimless"
    ]
    assert len(waiting) == 1 and "late-logs" in waiting[0], waiting


#: A trial program (in the trainer image's Python) that prints `NOISE_MIB` MiB of other output
#: before each epoch's line and waits past the kubelet's rotation check, so that its log is
#: rotated under it; its final values go to the termination message. No `$` (TorchX macros).
NOISE_MIB = 3
EPOCHS = 3
ACC = [0.1, 0.4123456789012345, 0.6987654321098765, 0.8123456789012345]  # val_acc by epoch
ROTATING_TRIAL = f"""
import json, os, sys, time
junk = ("x" * 1023 + "\\n") * 1024
acc = {ACC!r}
def line(seq, values):
    print("NASOP1 " + json.dumps({{"seq": seq, "step": seq, "v": values}}), flush=True)
line(0, {{"num_params": 1234, "val_acc": acc[0]}})
for epoch in range(1, {EPOCHS} + 1):
    for _ in range({NOISE_MIB}):
        sys.stdout.write(junk)
    sys.stdout.flush()
    time.sleep(4)
    line(epoch, {{"val_acc": acc[epoch]}})
final = {{"val_acc": [{EPOCHS}, acc[{EPOCHS}]], "num_params": [0, 1234]}}
with open(os.environ["NASOP_TERMINATION_LOG"], "w") as fh:
    fh.write("NASOP1 " + json.dumps({{"final": final, "lines": {EPOCHS} + 1}}))
"""


def _recorded(plane: ControlPlane, name: str) -> dict[tuple[str, int], float]:
    """Ax's data of the experiment's trial 0, (metric, step) -> value, from its state ConfigMaps."""
    import kubernetes.config

    import nasop.generators.exhaustive  # noqa: F401  # its acquisition, which the state holds
    from nasop.state.configmap import ConfigMapStore
    from nasop.trials import registry

    api = kubernetes.config.new_client_from_config_dict(plane.admin_kubeconfig())
    try:
        snapshot = ConfigMapStore(api, NS, registry=registry.bundle()).load(name=name)
    finally:
        api.close()
    assert snapshot is not None
    df = snapshot.experiment.lookup_data().full_df
    return {
        (row.metric_name, int(row.step)): float(row.mean)
        for row in df.itertuples()
        if int(row.trial_index) == 0
    }


def test_a_trial_whose_log_rotates_reports_its_gap_and_exact_final_values(
    node_cluster: NodeCluster,
) -> None:
    """Issue 23, log rotation: the kubelet (containerLogMaxSize 1Mi, 2 files, checked every
    3 s) rotates the log of a trial that prints megabytes between epochs, and serves only the
    current file. The final values in Ax are the termination message's, exactly; every line the
    operator did not read is counted in a TrialOutputRefused Event; none is lost silently."""
    plane = node_cluster.plane
    exp = _experiment("rotating", 1, [])
    exp["spec"]["trial"]["command"] = ["python", "-c", ROTATING_TRIAL]
    plane.request("POST", EXPERIMENTS, exp)
    done = poll(
        lambda: (
            node_cluster.node.check_alive()
            or _phase(plane, "rotating", {"Succeeded", "Failed", "Invalid"})
        ),
        300,
        "the rotating search did not finish",
        interval=1,
    )
    assert done["status"]["phase"] == "Succeeded", done["status"]
    (pod,) = _trial_pods(plane, "rotating")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    final = results.decode_final(terminated["message"])
    assert not isinstance(final, str), terminated["message"]

    # the kubelet rotated: rotated files beside the current one, and it serves less than printed
    meta = pod["metadata"]
    folder = node_cluster.node.workdir / "pod-logs" / f"{NS}_{meta['name']}_{meta['uid']}"
    rotated = sorted(p.name for p in folder.glob("*/*.log.*"))
    assert rotated, sorted(p.name for p in folder.rglob("*"))
    served = plane.request_text(f"{PODS}/{meta['name']}/log")
    printed = EPOCHS * NOISE_MIB << 20
    assert len(served) < printed // 2, (len(served), printed)

    # the final values are exact; each printed line is recorded whole or counted as missing
    recorded = _recorded(plane, "rotating")
    (point,) = done["status"]["paretoFront"]
    for name, (step, value) in final[None]["final"].items():
        assert recorded[(name, step)] == value, (name, recorded)
        assert point["metrics"][name] == value, point
    printed_lines = {0: {("num_params", 0): 1234.0, ("val_acc", 0): ACC[0]}} | {
        e: {("val_acc", e): ACC[e]} for e in range(1, EPOCHS + 1)
    }
    lost = [
        s for s, pts in printed_lines.items() if any(recorded.get(k) != v for k, v in pts.items())
    ]
    events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    refused = [
        e["message"]
        for e in events
        if e.get("reason") == "TrialOutputRefused" and e["involvedObject"]["name"] == "rotating"
    ]
    print(
        f"\nrotation: printed {printed >> 20} MiB, served {len(served)} bytes, rotated files "
        f"{rotated}; lines lost {lost}; Events {refused}",
        flush=True,
    )
    if lost:
        assert len(refused) == 1, refused
        assert f"{len(lost)} lines missing (sequence gaps)" in refused[0], (lost, refused)
    else:
        assert not refused, refused
    plane.request("DELETE", f"{EXPERIMENTS}/rotating")


def _millicpu(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def _cpu_requested(plane: ControlPlane) -> int:
    """Millicores requested by the pods that hold the node's CPU now (not ended)."""
    pods = plane.request("GET", "/api/v1/pods")["items"]
    return sum(
        _millicpu(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
        for p in pods
        if p["spec"].get("nodeName") == node.NODE_NAME
        and p["status"].get("phase") not in ("Succeeded", "Failed")
        for c in p["spec"]["containers"]
    )


def _scheduled_at(pod: dict[str, Any]) -> float | None:
    for cond in pod["status"].get("conditions") or []:
        if cond["type"] == "PodScheduled" and cond["status"] == "True":
            return _time(cond["lastTransitionTime"])
    return None


DIGEST = re.compile(r"nasop-trainer: rank (\d+)/(\d+) weights sha256=([0-9a-f]{64})")


def _assert_trained_together(
    plane: ControlPlane, status: dict[str, Any], pods: list[dict[str, Any]]
) -> None:
    """A two-replica trial succeeded on two pods whose ranks ended with the same weights (each
    rank logs a digest of its final weights: the ranks exchanged gradients over the pods'
    network), and the trial's metrics are those one rank (rank 0) wrote to its termination
    message, the other pod reporting none."""
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["completed"] == 1, status["trials"]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    digests: dict[int, str] = {}
    finals = []
    for pod in pods:
        state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert state["exitCode"] == 0, state
        log = plane.request_text(f"{PODS}/{pod['metadata']['name']}/log")
        for rank, world, digest in DIGEST.findall(log):
            assert world == "2", log[-2000:]
            digests[int(rank)] = digest
        final = results.decode_final(state.get("message") or "")
        if final and not isinstance(final, str):
            finals.append(final[None]["final"])
    assert sorted(digests) == [0, 1] and len(set(digests.values())) == 1, digests
    assert len(finals) == 1, f"{len(finals)} pods reported final values"
    (point,) = status["paretoFront"]
    for name in ("val_acc", "num_params"):
        assert point["metrics"][name] == pytest.approx(finals[0][name][1], rel=1e-9)
    print(f"ranks 0 and 1 ended with weights {digests[0][:12]}...; {point['metrics']}", flush=True)


def _gang_state(plane: ControlPlane, experiment: str) -> str:
    """What the cluster says of a waiting trial (printed when the gang test fails): the
    experiment's status, its Volcano job's status, the PodGroups, the trial pods' status, the
    namespace's recent Events and the operator's last log lines."""
    out: dict[str, Any] = {}
    try:
        out["experiment"] = plane.request("GET", f"{EXPERIMENTS}/{experiment}").get("status")
        jobs = plane.request("GET", f"{JOBS}?labelSelector=nasop.dev/experiment%3D{experiment}")
        out["jobs"] = [
            {"metadata": j["metadata"], "status": j.get("status")} for j in jobs["items"]
        ]
        groups = plane.request(
            "GET", f"/apis/scheduling.volcano.sh/v1beta1/namespaces/{NS}/podgroups"
        )["items"]
        out["podgroups"] = groups
        out["pods"] = [
            {"metadata": p["metadata"], "status": p["status"]}
            for p in _trial_pods(plane, experiment)
        ]
        events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
        out["events"] = [
            f"{e['involvedObject']['kind']}/{e['involvedObject']['name']} {e.get('reason')}: "
            f"{e.get('message')}"
            for e in events[-30:]
        ]
        ops = plane.request("GET", f"{PODS}?labelSelector=app.kubernetes.io/component%3Doperator")
        name = ops["items"][0]["metadata"]["name"]
        out["operator_log"] = plane.request_text(f"{PODS}/{name}/log").splitlines()[-60:]
    except Exception as e:  # a diagnostic: say what could be read
        out["error"] = repr(e)
    return yaml.safe_dump(out, width=200)


def test_a_two_replica_trial_is_held_whole_by_volcanos_gang_until_both_pods_fit(
    node_cluster: NodeCluster,
) -> None:
    """Issue 26, gang scheduling on the real Volcano: a placeholder pod leaves room for one
    trial pod of two; Volcano holds the trial's PodGroup (minMember 2) and binds neither pod,
    the experiment says the trial waits (pending, not failed; the PodGroup named). Once the
    placeholder goes, both pods are bound in the same scheduling session, find rank 0 by the
    name Volcano gives it (``VC_TRAINER_0_HOSTS``, answered by the cluster DNS), train together
    and the search succeeds with rank 0's metrics."""
    plane = node_cluster.plane
    node_obj = plane.request("GET", f"/api/v1/nodes/{node.NODE_NAME}")
    allocatable = _millicpu(node_obj["status"]["allocatable"]["cpu"])
    free = allocatable - _cpu_requested(plane)
    # a trial pod requests `each` millicores: its resources.cpu less what TorchX keeps back for
    # the system (a limit of each + 100m; the first run of this test missed it and left room
    # for both pods). With the placeholder one pod fits and two do not; without it both do.
    each = free * 9 // 20 // 100 * 100
    hold = free - 2 * each + 100  # leaves 2 x each - 100: Volcano admits the job (its
    # overcommit factor 1.2 of the node), creates both pods, and its gang plugin must hold them
    placeholder = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "placeholder", "namespace": NS},
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": node.PAUSE_IMAGE,
                    "imagePullPolicy": "Never",
                    "resources": {"requests": {"cpu": f"{hold}m"}},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
    plane.request("POST", PODS, placeholder)
    poll(
        lambda: plane.request("GET", f"{PODS}/placeholder")["status"].get("phase") == "Running",
        120,
        "the placeholder pod did not run",
        interval=0.5,
    )
    exp = _experiment("gang", 1, ["--dataset", "digits"])
    exp["spec"]["trial"]["replicas"] = 2
    limit = each + RESERVED_MILLICPU
    exp["spec"]["trial"]["resources"] = {"cpu": limit / 1000, "memMB": 1024, "gpu": 0}
    exp["spec"]["budget"]["parallelism"] = 1
    plane.request("POST", EXPERIMENTS, exp)
    try:

        def waiting() -> dict[str, Any] | None:
            node_cluster.node.check_alive()
            obj = plane.request("GET", f"{EXPERIMENTS}/gang")
            conds = (obj.get("status") or {}).get("conditions") or []
            said = next((c["message"] for c in conds if c["type"] == "Reconciling"), "")
            # the gang's reason, from its PodGroup (the pod that fits says only `Schedulable`)
            return obj if "tasks in gang unschedulable" in said else None

        obj = poll(
            waiting, 120, "the Reconciling message never said why the gang waits", interval=1
        )
        held_since = time.monotonic()
        said = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Reconciling")
        print(
            f"\nfree {free}m, placeholder {hold}m, trial pod {each}m x 2 (limit {limit}m); "
            f"Reconciling: {said}"
        )
        (job,) = plane.request("GET", f"{JOBS}?labelSelector=nasop.dev/experiment%3Dgang")["items"]
        assert (
            job["spec"]["minAvailable"] == 2
            and sum(t["replicas"] for t in job["spec"]["tasks"]) == 2
        )
        requests = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["resources"][
            "requests"
        ]
        asked = _millicpu(requests["cpu"])  # what nasop asks of the node for resources.cpu
        room = allocatable - _cpu_requested(plane)  # beside the operator and the placeholder
        assert asked == each and asked <= room < 2 * asked, (asked, each, room)  # one pod of two
        groups = plane.request(
            "GET", f"/apis/scheduling.volcano.sh/v1beta1/namespaces/{NS}/podgroups"
        )["items"]
        (group,) = [g for g in groups if g["metadata"]["name"].startswith(job["metadata"]["name"])]
        assert group["spec"]["minMember"] == 2, group["spec"]
        assert group["status"].get("phase") in ("Pending", "Inqueue"), group["status"]
        print(f"PodGroup {group['status']}", flush=True)
        while time.monotonic() - held_since < 10:  # 50 of Volcano's scheduling periods
            assert not any(p["spec"].get("nodeName") for p in _trial_pods(plane, "gang"))
            obj = plane.request("GET", f"{EXPERIMENTS}/gang")
            trials = obj["status"]["trials"]
            assert (trials["pending"], trials["running"], trials["failed"]) == (1, 0, 0), trials
            time.sleep(1)

        plane.request("DELETE", f"{PODS}/placeholder")

        def both_bound() -> list[float] | None:
            node_cluster.node.check_alive()
            times = [_scheduled_at(p) for p in _trial_pods(plane, "gang")]
            return [t for t in times if t is not None] if len(times) == 2 and all(times) else None

        bound = poll(
            both_bound, 120, "the trial's pods did not start once there was room", interval=0.5
        )
        print(f"both pods bound {abs(bound[0] - bound[1]):.0f} s apart", flush=True)
        assert abs(bound[0] - bound[1]) <= 1, bound  # one scheduling session (whole seconds)
        done = poll(
            lambda: _phase(plane, "gang", {"Succeeded", "Failed", "Invalid"}),
            600,
            "the two-replica search did not finish",
            interval=2,
        )
        _assert_trained_together(plane, done["status"], _trial_pods(plane, "gang"))
        plane.request("DELETE", f"{EXPERIMENTS}/gang")
    except BaseException:
        print(_gang_state(plane, "gang"), flush=True)
        raise


def _running_trial_pods(plane: ControlPlane, experiment: str, trial: int) -> list[dict[str, Any]]:
    pods = [
        p
        for p in _trial_pods(plane, experiment)
        if p["metadata"]["labels"].get("nasop.dev/trial") == str(trial)
    ]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    return running if len(running) == 2 else []


def _container_id(pod: dict[str, Any]) -> str:
    return pod["status"]["containerStatuses"][0]["containerID"].partition("://")[2]


def test_a_sigkilled_operator_reattaches_to_a_two_replica_trial_and_a_killed_replica_is_named(
    node_cluster: NodeCluster,
) -> None:
    """Issue 26, ends and failures on the real node: while trial 0's two pods run, the operator's
    container is SIGKILLed (``ctr tasks kill``, as the OOM killer would); the kubelet restarts it,
    it re-attaches to the running trial and launches nothing twice. While trial 1's two pods run,
    one replica's container is SIGKILLed: Volcano ends the job (``PodFailed -> TerminateJob``)
    and the trial fails with a reason naming that replica."""
    plane, kubelet = node_cluster.plane, node_cluster.node
    exp = _experiment("gang-kill", 2, ["--dataset", "digits"])
    spec = exp["spec"]
    spec["trial"]["replicas"] = 2
    spec["budget"]["parallelism"] = 1
    # long enough (tens of seconds) that the kills land while the ranks train
    spec["searchSpace"] = [
        p if p["name"] != "epochs" else {**p, "bounds": [20, 25]} for p in spec["searchSpace"]
    ]
    plane.request("POST", EXPERIMENTS, exp)
    try:
        poll(
            lambda: kubelet.check_alive() or _running_trial_pods(plane, "gang-kill", 0),
            300,
            "trial 0's two pods did not run",
            interval=0.5,
        )
        (operator,) = plane.request(
            "GET", f"{PODS}?labelSelector=app.kubernetes.io/component%3Doperator"
        )["items"]
        restarts = operator["status"]["containerStatuses"][0]["restartCount"]
        kubelet.ctr("tasks", "kill", "--signal", "SIGKILL", _container_id(operator))

        def restarted() -> bool:
            pod = plane.request("GET", f"{PODS}/{operator['metadata']['name']}")
            status = pod["status"]["containerStatuses"][0]
            return status["restartCount"] > restarts and "running" in status["state"]

        poll(restarted, 120, "the operator's container was not restarted", interval=0.5)

        pods = poll(
            lambda: kubelet.check_alive() or _running_trial_pods(plane, "gang-kill", 1),
            300,
            "trial 1's two pods did not run",
            interval=0.5,
        )
        victim = pods[1]
        replica = victim["metadata"]["labels"]["torchx.pytorch.org/replica-id"]
        kubelet.ctr("tasks", "kill", "--signal", "SIGKILL", _container_id(victim))
        done = poll(
            lambda: _phase(plane, "gang-kill", {"Succeeded", "Failed", "Invalid"}),
            600,
            "the search did not end",
            interval=1,
        )
        trials = done["status"]["trials"]
        assert (trials["completed"], trials["failed"]) == (1, 1), done["status"]
        jobs = plane.request("GET", f"{JOBS}?labelSelector=nasop.dev/experiment%3Dgang-kill")
        # one Volcano job per trial: the restarted operator launched nothing again
        assert len(jobs["items"]) == 2, [j["metadata"]["name"] for j in jobs["items"]]
        events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
        failed = [
            e["message"]
            for e in events
            if e.get("reason") == "TrialFailed" and e["involvedObject"]["name"] == "gang-kill"
        ]
        assert len(failed) == 1, failed
        said = (
            f"replica {replica} of 2 failed: pod {victim['metadata']['name']} exited with code 137"
        )
        assert f"{said} (SIGKILL" in failed[0], failed
        print(f"\nkilled replica {replica}: {failed[0][:300]}", flush=True)
        plane.request("DELETE", f"{EXPERIMENTS}/gang-kill")
    except BaseException:
        print(_gang_state(plane, "gang-kill"), flush=True)
        raise
