"""Trials that cannot start, on the real control plane: pending is not running, the reason is
said where people look, and a search whose trials cannot start is Stalled.

Jobs: kube-controller-manager's Job controller makes each trial's pod; the kubelet player keeps
it Pending with the status kube-scheduler writes on a pod whose claim does not exist, or the one
a kubelet writes on a pod whose image it cannot pull. Volcano: the Volcano player keeps the job
Pending with a PodGroup whose queue does not admit it. The operator reads those pods and
PodGroups itself (its calls are recorded for the chart's RBAC proof, in both RBAC modes).
"""

from __future__ import annotations

import threading
from typing import Any

import kstatus_check
import kubelet
import pytest
import volcano
from scenario import EXP, HANDLERS, events, resource, wait_for, wait_phase

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

MISSING_CLAIM = (
    '0/1 nodes are available: persistentvolumeclaim "nasop-logs" not found. preemption: 0/1 '
    "nodes are available: 1 Preemption is not helpful for scheduling."
)


def job_resource(tmp_path: Any, name: str, start_timeout: str, **spec: Any) -> dict[str, Any]:
    res = resource(tmp_path, name, optimizer={"method": "sobol", "seed": 0}, **spec)
    res["spec"]["trial"]["scheduler"] = "job"
    res["spec"]["trial"]["startTimeout"] = start_timeout
    return res


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return {}


@pytest.mark.asyncio
async def test_a_missing_claim_is_said_stalls_the_search_and_clears_when_created(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Two Job trials whose pods cannot be scheduled (no claim): pending 2, running 0, the
    scheduler's message in the Reconciling condition and in one TrialWaiting event per trial;
    Stalled after half the start timeout; once the claim "exists" the pods run, Stalled clears
    and the search succeeds. Beside it, a search whose image cannot be pulled: each trial fails
    after its start timeout with the pull error, and the search fails once none could start."""
    claim = threading.Event()

    def waiting(pod: dict[str, Any]) -> dict[str, Any] | None:
        if pod["metadata"]["labels"]["nasop.dev/experiment"] == "typo":
            return kubelet.image_pull(pod)
        return None if claim.is_set() else kubelet.unschedulable(MISSING_CLAIM)

    def get(name: str) -> dict[str, Any]:
        return cluster.get_object(EXP, "default", name) or {}

    with kubelet.KubeletPlayer(cluster, namespace="default", waiting=waiting) as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            job_resource(tmp_path, "claimless", "60s", budget={"maxTrials": 2, "parallelism": 2}),
        )
        typo = job_resource(tmp_path, "typo", "12s", budget={"maxTrials": 4, "parallelism": 1})
        typo["spec"]["trial"]["image"] = "nasop-trainer:0.1.0-typo"
        cluster.create_object(EXP, typo)

        said = await wait_for(
            lambda: (
                "nasop-logs" in condition(get("claimless"), "Reconciling").get("message", "")
                and get("claimless")
            ),
            "the Reconciling message names the claim",
            60,
        )
        st = said["status"]
        assert (st["trials"]["pending"], st["trials"]["running"]) == (2, 0), st["trials"]
        reconciling = condition(said, "Reconciling")
        assert reconciling["status"] == "True"
        assert reconciling["message"].startswith("0 trials running, 2 waiting: Unschedulable: ")
        stalled = await wait_for(
            lambda: (
                condition(get("claimless"), "Stalled").get("status") == "True" and get("claimless")
            ),
            "Stalled",
            60,
        )
        cond = condition(stalled, "Stalled")
        assert cond["reason"] == "TrialsCannotStart"
        assert 'persistentvolumeclaim "nasop-logs" not found' in cond["message"]
        assert "To fix: create what the trial pods need" in cond["message"]
        assert condition(stalled, "Reconciling")["status"] == "False"
        assert stalled["status"]["phase"] == "Running"

        claim.set()  # the user creates the claim: the pods are scheduled and run
        done = await wait_phase(cluster, "claimless", {"Succeeded", "Failed"})
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert condition(done, "Stalled")["status"] == "False"
        assert done["status"]["trials"]["pending"] == 0

        failed = await wait_phase(cluster, "typo", {"Succeeded", "Failed"}, timeout=120)

    assert not player.errors
    # Flux's own verdict on the objects the real API server held: starting, stuck, done
    verdicts = kstatus_check.verdicts([said, stalled, done, failed])
    assert [v for v, _ in verdicts] == ["InProgress", "Failed", "Current", "Failed"], verdicts
    assert "nasop-logs" in verdicts[0][1] and "nasop-logs" in verdicts[1][1], verdicts
    assert "no trial could start" in verdicts[3][1], verdicts
    told = events(cluster, "TrialWaiting", "claimless")
    assert len(told) == 2, [e["message"] for e in told]  # one per trial, not one per tick
    assert all(e.get("count", 1) == 1 for e in told), told
    assert all("persistentvolumeclaim" in e["message"] for e in told)

    st = failed["status"]
    assert st["phase"] == "Failed", st
    assert st["message"].startswith("no trial could start: 2 trials"), st["message"]
    assert "nasop-trainer:0.1.0-typo" in st["message"] and "ErrImagePull" in st["message"]
    interrupted = events(cluster, "TrialInterrupted", "typo")
    assert len(interrupted) == 2, [e["message"] for e in interrupted]
    assert all("did not start within spec.trial.startTimeout (12s)" in e["message"]
               for e in interrupted)  # fmt: skip
    assert all("not retried" in e["message"] for e in interrupted)
    assert not events(cluster, "TrialFailed", "typo")  # not the trainer's fault


@pytest.mark.asyncio
async def test_a_volcano_queue_that_does_not_admit_says_the_podgroups_reason(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """A Volcano job whose queue is closed: its PodGroup's Unschedulable message reaches the
    Reconciling condition and one TrialWaiting event; once the queue admits it, it succeeds."""
    admitted = threading.Event()
    res = resource(
        tmp_path,
        "queued",
        optimizer={"method": "sobol", "seed": 0},
        budget={"maxTrials": 1, "parallelism": 1},
    )
    res["spec"]["trial"]["queue"] = "closed"
    with volcano.VolcanoPlayer(
        cluster,
        volcano.run_command(),
        admitted=admitted,
        podgroup=volcano.closed_queue,
        namespace="default",
    ) as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)
        said = await wait_for(
            lambda: (
                "queue closed is closed"
                in condition(cluster.get_object(EXP, "default", "queued"), "Reconciling").get(
                    "message", ""
                )
                and cluster.get_object(EXP, "default", "queued")
            ),
            "the Reconciling message names the PodGroup's reason",
            60,
        )
        assert said["status"]["trials"]["pending"] == 1
        [ev] = await wait_for(lambda: events(cluster, "TrialWaiting", "queued"), "TrialWaiting")
        assert "PodGroupUnschedulable: Volcano PodGroup" in ev["message"]
        admitted.set()
        done = await wait_phase(cluster, "queued", {"Succeeded", "Failed"})
    assert not player.errors
    assert done["status"]["phase"] == "Succeeded", done["status"]
