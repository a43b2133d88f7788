"""A trial is harvested before its pods can go: the real operator, the real API server.

Trials run as batch/v1 Jobs (kube-controller-manager's Job controller makes the pods, the test
plays the kubelet: tests/operator/kubelet.py). Each pod carries nasop's `nasop.dev/harvest`
finalizer; the scenarios check, on the pod objects, that it holds a finished pod until the
operator has read and recorded its output and is gone after; that a pod or job deleted while the
operator is down is still harvested, and a pod gone for good (its finalizer removed by hand)
fails its trial with that reason, never completed and never run again. (An operator killed
again and again while trials log: test_operator_killed.py; the pod garbage collector:
test_pod_gc.py.)
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import kubelet
import pytest
from scenario import (
    DECLARED,
    EXP,
    HANDLERS,
    RBAC_BOTH,
    by_trial,
    events,
    printed_points,
    recorded_points,
    resource,
    saved_experiment,
    wait_for,
    wait_phase,
)

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
FINALIZER = "nasop.dev/harvest"


def _resource(tmp_path: Any, name: str, epochs: int, **spec: Any) -> dict[str, Any]:
    res = resource(tmp_path, name, optimizer={"method": "sobol", "seed": 0}, **spec)
    res["spec"]["trial"]["scheduler"] = "job"
    res["spec"]["trial"]["args"] = ["--tensorboard=off"]  # no torch import: trials start at once
    for p in res["spec"]["searchSpace"]:
        if p["name"] == "epochs":
            p["value"] = epochs
    return res


def _pods(cluster: Any, name: str) -> dict[int, dict[str, Any]]:
    """The experiment's pods by trial index (one pod per trial Job)."""
    return by_trial(cluster, PODS, name)


def _jobs(cluster: Any, name: str) -> dict[int, dict[str, Any]]:
    return by_trial(cluster, JOBS, name)


def _complete(job: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _printed(cluster: Any, pod: str) -> dict[tuple[str, int], float]:
    """The NASOP1 points of declared metrics a played pod printed: (metric, step) -> value."""
    return printed_points(cluster.proxy.pod_logs[("default", pod)].text())


def _recorded(cluster: Any, name: str) -> dict[int, list[tuple[str, int, float]]]:
    """Ax's data of each trial, as (metric, step, value) rows, from the state ConfigMaps."""
    return recorded_points(saved_experiment(cluster, name))


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)  # a Job gone while the operator was down: GET confirms it
async def test_pods_deleted_while_the_operator_is_down_are_harvested_or_named(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Four trials finish while the operator is down. Then trial 0's pod is deleted, trial 1's
    Job is deleted, trial 2's pod loses the finalizer by hand and is deleted, trial 3 is left.
    The finalizer holds 0's and 1's pods (Terminating) and 3's: when the operator returns, 0, 1
    and 3 complete with exactly what they printed and their pods go; 2 fails naming its deleted
    pods, is not run again (a new trial takes its place), and nothing completes twice."""
    gate = threading.Event()
    with kubelet.KubeletPlayer(cluster, kubelet.gated(gate), namespace="default") as player:
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        created = cluster.create_object(
            EXP, _resource(tmp_path, "reap", 3, budget={"maxTrials": 4, "parallelism": 4})
        )
        await wait_for(lambda: len(player.running) == 4, "4 trial pods running", 60)
        for pod in _pods(cluster, "reap").values():  # held from the start, found by uid label
            assert FINALIZER in pod["metadata"]["finalizers"], pod["metadata"]
            uid = pod["metadata"]["labels"]["nasop.dev/experiment-uid"]
            assert uid == created["metadata"]["uid"]
        await handle.cancel()  # the operator is down while the trials finish
        gate.set()
        await wait_for(
            lambda: len([j for j in _jobs(cluster, "reap").values() if _complete(j)]) == 4,
            "4 Jobs Complete",
            60,
        )
        pods = _pods(cluster, "reap")
        names = {i: p["metadata"]["name"] for i, p in pods.items()}
        printed = {i: _printed(cluster, names[i]) for i in (0, 1, 3)}
        assert all(p["status"]["phase"] == "Succeeded" for p in pods.values())
        cluster.delete_object(PODS, "default", names[0])
        cluster.delete_object(JOBS, "default", _jobs(cluster, "reap")[1]["metadata"]["name"])
        # a person removes the finalizer (as docs/operator.md says) and deletes the pod
        left = [f for f in pods[2]["metadata"].get("finalizers") or [] if f != FINALIZER]
        cluster.patch_object(PODS, "default", names[2], {"metadata": {"finalizers": left}})
        cluster.delete_object(PODS, "default", names[2])

        def held() -> bool:
            now = _pods(cluster, "reap")
            return (
                2 not in now
                and all(now[i]["metadata"].get("deletionTimestamp") for i in (0, 1))
                and all(FINALIZER in now[i]["metadata"]["finalizers"] for i in (0, 1, 3))
            )

        await wait_for(held, "0 and 1 Terminating, held by the finalizer; 2 gone", 30)
        await asyncio.sleep(1.0)  # still held: nothing else removes nasop's finalizer
        assert held()

        await run_operator(modules=HANDLERS, watching=[EXP])
        obj = await wait_phase(cluster, "reap", {"Succeeded", "Failed"})
        st = obj["status"]
        assert st["phase"] == "Succeeded", st
        # 2 failed (not counted), a new trial took its place
        assert (st["trials"]["completed"], st["trials"]["failed"], st["trials"]["total"]) == (
            4,
            1,
            5,
        ), st["trials"]
        await wait_for(
            lambda: (
                set(_pods(cluster, "reap")) == {3, 4}
                and not any(
                    FINALIZER in (p["metadata"].get("finalizers") or [])
                    for p in _pods(cluster, "reap").values()
                )
            ),
            "0's and 1's pods gone, 3's and 4's released",
            30,
        )
    interrupted = events(cluster, "TrialInterrupted", "reap")
    assert len(interrupted) == 1, interrupted
    message = interrupted[0]["message"]
    assert message.startswith("trial 2: the pods of job ") and "were deleted before" in message
    assert "not retried" in message
    completed = sorted(
        int(e["message"].split()[1]) for e in events(cluster, "TrialCompleted", "reap")
    )
    assert completed == [0, 1, 3, 4], completed  # each once; 2 never
    assert not [m for m in events(cluster, "TrialLaunched", "reap") if "retry of" in m["message"]]
    assert sorted(_jobs(cluster, "reap")) == [0, 2, 3, 4]  # 1's Job deleted; each launched once
    recorded = _recorded(cluster, "reap")
    assert 2 not in recorded  # nothing of the trial whose output was lost
    for i in (0, 1, 3):
        rows = recorded[i]
        assert len(rows) == len({(m, s) for m, s, _ in rows}), rows  # each (metric, step) once
        assert {(m, s): v for m, s, v in rows} == pytest.approx(printed[i]), i
    assert not player.errors


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_a_deleted_experiment_leaves_no_pod_terminating_operator_up_or_down(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Experiments deleted while their trials run: with the operator up, it releases their
    pods as it stops the search; with it down, the pods wait Terminating on nasop's finalizer
    until the operator starts again and releases them at startup."""
    gate = threading.Event()  # never opened: the trials run until their pods are deleted
    with kubelet.KubeletPlayer(cluster, kubelet.gated(gate), namespace="default") as player:
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        for name in ("up", "down"):
            cluster.create_object(
                EXP, _resource(tmp_path, name, 3, budget={"maxTrials": 2, "parallelism": 2})
            )
        await wait_for(lambda: len(player.running) == 4, "4 trial pods running", 60)
        cluster.delete_object(EXP, "default", "up")
        await wait_for(lambda: not _pods(cluster, "up"), "up's pods released and gone", 30)

        await handle.cancel()
        cluster.delete_object(EXP, "default", "down")

        def held() -> bool:
            pods = _pods(cluster, "down").values()
            return len(pods) == 2 and all(
                p["metadata"].get("deletionTimestamp") and FINALIZER in p["metadata"]["finalizers"]
                for p in pods
            )

        await wait_for(held, "down's pods Terminating, held by the finalizer", 30)
        await asyncio.sleep(1.0)
        assert held()
        await run_operator(modules=HANDLERS, watching=[EXP])
        await wait_for(lambda: not _pods(cluster, "down"), "down's pods released at startup", 30)
    assert not player.errors


@pytest.mark.asyncio
async def test_a_pod_gone_after_its_termination_message_was_read_completes_from_it(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """The operator reads the finished pod's termination message, but the kubelet cannot serve
    its log (500s from the proxy); then the pod goes for good (finalizer removed by hand). The
    trial completes from its final values, and an Event names the pod whose output was lost."""
    from nasop import results

    log_fault = cluster.proxy.inject("GET", "/log", 500, times=10_000)
    with kubelet.KubeletPlayer(cluster, namespace="default") as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP, _resource(tmp_path, "partial", 3, budget={"maxTrials": 1, "parallelism": 1})
        )
        await wait_for(lambda: log_fault.hits >= 2, "the operator trying to read the log", 60)
        [pod] = _pods(cluster, "partial").values()
        assert pod["status"]["phase"] == "Succeeded"
        assert FINALIZER in pod["metadata"]["finalizers"]  # held while it cannot be read
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        left = [f for f in pod["metadata"]["finalizers"] if f != FINALIZER]
        name = pod["metadata"]["name"]
        cluster.patch_object(PODS, "default", name, {"metadata": {"finalizers": left}})
        cluster.delete_object(PODS, "default", name)
        obj = await wait_phase(cluster, "partial", {"Succeeded", "Failed"}, timeout=60)
    assert not player.errors
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert obj["status"]["trials"]["completed"] == 1
    [refused] = await wait_for(
        lambda: events(cluster, "TrialOutputRefused", "partial"), "TrialOutputRefused", 10
    )
    assert f"pod {name} was deleted before its output was read" in refused["message"]
    finals = results.decode_final(message)
    assert isinstance(finals, dict)
    expected = {(m, step): v for m, (step, v) in finals[None]["final"].items() if m in DECLARED}
    rows = _recorded(cluster, "partial")[0]
    assert {(m, s): v for m, s, v in rows} == pytest.approx(expected)
