"""Finished trial pods deleted by kube-controller-manager's pod garbage collector while the
operator is down: nasop's harvest finalizer holds them until their output is recorded.

A second kube-controller-manager runs only the pod GC controller, with
`--terminated-pod-gc-threshold=1` (the default is 12,500: a cluster under pressure, or a
managed one tuned low, deletes finished pods within its 20-second sweep). The trials run as
batch/v1 Jobs (the test plays their kubelet, tests/operator/kubelet.py).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import kubelet
import pytest
from scenario import (
    EXP,
    HANDLERS,
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

PODS = "v1/pods"
FINALIZER = "nasop.dev/harvest"
TRIALS = 3


@pytest.fixture()
def pod_gc(cluster: Any, tmp_path: Any) -> Iterator[subprocess.Popen[bytes]]:
    """kube-controller-manager with only the pod GC controller, threshold 1, for this test."""
    plane = cluster.plane
    with open(tmp_path / "pod-gc.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(plane.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={plane.admin_kubeconfig_path}",
                "--leader-elect=false",
                "--secure-port=0",
                "--controllers=pod-garbage-collector-controller",
                "--terminated-pod-gc-threshold=1",
                "--v=2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)


def _pods(cluster: Any, name: str) -> dict[int, dict[str, Any]]:
    return by_trial(cluster, PODS, name)


@pytest.mark.asyncio
async def test_pods_collected_by_pod_gc_at_threshold_1_are_harvested_after_the_operator_returns(
    cluster, kubeconfig, run_operator, fast_ticks, pod_gc, tmp_path
):
    """Three trials finish while the operator is down; the pod GC deletes all but the newest
    finished pod in the cluster (so at least two of these three). The finalizer holds them
    Terminating; when the operator returns, each trial completes once with exactly what its pod
    printed, none is launched again, and every pod then goes."""
    gate = threading.Event()
    res = resource(
        tmp_path,
        "swept",
        budget={"maxTrials": TRIALS, "parallelism": TRIALS},
        optimizer={"method": "sobol", "seed": 0},
    )
    res["spec"]["trial"]["scheduler"] = "job"
    res["spec"]["trial"]["args"] = ["--tensorboard=off"]
    with kubelet.KubeletPlayer(cluster, kubelet.gated(gate), namespace="default") as player:
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)
        await wait_for(lambda: len(player.running) == TRIALS, f"{TRIALS} trial pods running", 60)
        await handle.cancel()  # scaled to zero while the trials finish
        gate.set()

        def swept() -> list[int]:
            pods = _pods(cluster, "swept")
            done = [p for p in pods.values() if (p.get("status") or {}).get("phase") == "Succeeded"]
            deleted = [i for i, p in pods.items() if p["metadata"].get("deletionTimestamp")]
            return deleted if len(done) == TRIALS and len(deleted) >= TRIALS - 1 else []

        deleted = await wait_for(swept, "the pod GC deleting the finished pods", 60)
        pods = _pods(cluster, "swept")
        assert all(FINALIZER in pods[i]["metadata"]["finalizers"] for i in deleted)  # held
        names = {i: p["metadata"]["name"] for i, p in pods.items()}
        logs = {i: cluster.proxy.pod_logs[("default", n)].text() for i, n in names.items()}
        printed = {i: printed_points(text) for i, text in logs.items()}

        await run_operator(modules=HANDLERS, watching=[EXP])
        obj = await wait_phase(cluster, "swept", {"Succeeded", "Failed"}, timeout=60)

        def released() -> bool:
            left = _pods(cluster, "swept")  # the one the pod GC keeps stays, without the finalizer
            return not set(deleted) & set(left) and not any(
                FINALIZER in (p["metadata"].get("finalizers") or []) for p in left.values()
            )

        await wait_for(released, "every pod released, the deleted ones gone", 60)
    assert not player.errors
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert (st["trials"]["completed"], st["trials"]["failed"], st["trials"]["total"]) == (3, 0, 3)
    assert not events(cluster, "TrialInterrupted", "swept")
    assert not events(cluster, "TrialOutputRefused", "swept")
    creates = [
        c
        for c in cluster.operator_calls()
        if (c.verb, c.group, c.resource, c.code) == ("create", "batch", "jobs", 201)
    ]
    assert len(creates) == TRIALS  # each launched once
    recorded = recorded_points(saved_experiment(cluster, "swept"))
    for i in range(TRIALS):
        rows = recorded[i]
        assert len(rows) == len({(m, s) for m, s, _ in rows}), rows  # each (metric, step) once
        assert {(m, s): v for m, s, v in rows} == pytest.approx(printed[i]), i
    # the deletions were the pod GC's (its log names them), not the operator's
    log = (tmp_path / "pod-gc.log").read_text(errors="replace")
    assert all(names[i] in log for i in deleted), log[-2000:]
