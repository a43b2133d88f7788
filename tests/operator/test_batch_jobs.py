"""Trials as plain ``batch/v1`` Jobs (``spec.trial.scheduler: job``) on the real control plane.

The real operator creates Jobs through nasop's ``kubernetes_job`` TorchX scheduler;
kube-controller-manager's own Job controller creates their Pods and judges them; the test plays
the kubelet (``kubelet.KubeletPlayer``: each pod's command runs as a local process, or the pod is
evicted). The operator's calls are recorded for the chart's RBAC proof, in both RBAC modes.
"""

from __future__ import annotations

from typing import Any

import kubelet
import pytest
from scenario import EXP, HANDLERS, events, resource, wait_for, wait_phase

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

JOBS = "batch/v1/jobs"


def job_resource(tmp_path: Any, name: str, **spec: Any) -> dict[str, Any]:
    res = resource(tmp_path, name, **spec)
    res["spec"]["trial"]["scheduler"] = "job"
    return res


def jobs_of(cluster: Any, name: str) -> list[dict[str, Any]]:
    return cluster.list_objects(JOBS, "default", label_selector=f"nasop.dev/experiment={name}")


@pytest.mark.asyncio
async def test_job_search_runs_to_succeeded_and_a_missing_queue_is_invalid(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    queued = job_resource(
        tmp_path,
        "queued",
        budget={"maxTrials": 2, "parallelism": 1},
        optimizer={"method": "sobol", "seed": 0},
    )
    queued["spec"]["trial"]["queue"] = "team-a"  # no Kueue here: no such LocalQueue
    with kubelet.KubeletPlayer(cluster, namespace="default") as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, queued)
        cluster.create_object(
            EXP,
            job_resource(
                tmp_path,
                "plain",
                budget={"maxTrials": 4, "parallelism": 2, "maxDuration": "1h"},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        bad = await wait_phase(cluster, "queued", {"Invalid"})
        assert "spec.trial.queue" in bad["status"]["message"]
        assert "LocalQueue 'team-a'" in bad["status"]["message"]
        obj = await wait_phase(cluster, "plain", {"Succeeded", "Failed"})
    assert not player.errors
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert st["trials"]["completed"] == 4 and st["paretoFront"]
    jobs = jobs_of(cluster, "plain")
    assert sorted(int(j["metadata"]["labels"]["nasop.dev/trial"]) for j in jobs) == [0, 1, 2, 3]
    for job in jobs:
        assert job["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
        assert job["spec"]["backoffLimit"] == 0
        assert 0 < job["spec"]["activeDeadlineSeconds"] <= 3600
        assert "suspend" not in job["metadata"]["labels"] and not job["spec"].get("suspend")
        conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
        assert conditions.get("Complete") == "True"  # judged by the Job controller
    # the pods were the Job controller's, one per Job, and ran here
    assert sorted(job for _, _, job in player.started) == sorted(
        j["metadata"]["name"] for j in jobs
    )
    assert not jobs_of(cluster, "queued")


@pytest.mark.asyncio
async def test_evicted_pod_is_retried_and_failed_pods_fail_the_search(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Trial 0's pod is evicted (retried as a new trial, not a failure), trial 1 runs until
    cancelled, every later trial exits 3 with a clear last log line: the second failure fails
    the search, trial 1's Job is cancelled, and deleting the experiment finds nothing left."""
    evicted: set[str] = set()

    def outcome(pod: dict[str, Any], cancelled: Any) -> kubelet.PodOutcome:
        trial = pod["metadata"]["labels"]["nasop.dev/trial"]
        if trial == "0":
            evicted.add(trial)
            return kubelet.evict(pod, cancelled)
        if trial == "1":
            return kubelet.hold(pod, cancelled)
        return kubelet.PodOutcome(3, "loading data\nboom: trial cannot converge\n")

    with kubelet.KubeletPlayer(cluster, outcome, namespace="default") as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            job_resource(
                tmp_path,
                "doomed",
                budget={"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 1},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        obj = await wait_phase(cluster, "doomed", {"Failed"})
        assert "maxFailedTrials" in obj["status"]["message"]
        interrupted = await wait_for(
            lambda: events(cluster, "TrialInterrupted", "doomed"), "TrialInterrupted"
        )
        assert "evicted or preempted" in interrupted[0]["message"]
        assert "will be retried" in interrupted[0]["message"]
        failed = await wait_for(lambda: events(cluster, "TrialFailed", "doomed"), "TrialFailed")
        assert any("boom: trial cannot converge" in e["message"] for e in failed), failed
        await wait_for(
            lambda: (
                not [
                    j
                    for j in jobs_of(cluster, "doomed")
                    if j["metadata"]["labels"]["nasop.dev/trial"] == "1"
                ]
            ),
            "trial 1's Job cancelled",
            30,
        )
        [evicted_job] = [
            j
            for j in jobs_of(cluster, "doomed")
            if j["metadata"]["labels"]["nasop.dev/trial"] == "0"
        ]
        reasons = {
            c["type"]: c.get("reason")
            for c in evicted_job["status"]["conditions"]
            if c["status"] == "True"
        }
        assert reasons.get("Failed") == "PodFailurePolicy"  # the Job controller's verdict
        cluster.delete_object(EXP, "default", "doomed")
        ev = await wait_for(lambda: events(cluster, "SearchDeleted", "doomed"), "SearchDeleted")
        assert "0 running trial jobs cancelled" in ev[0]["message"]
    assert not player.errors and evicted == {"0"}
