"""Why a trial waits, read from the objects the API server returns (pods, Kueue Workloads,
Volcano PodGroups): the dicts below are shaped as kube-scheduler, the kubelet, Kueue and Volcano
write them."""

from __future__ import annotations

from typing import Any

from nasop.trials import waiting

MISSING_CLAIM = (
    '0/1 nodes are available: persistentvolumeclaim "nasop-logs" not found. preemption: '
    "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)


def pod(conditions: list[dict[str, Any]] | None = None, **waiting_: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending", "conditions": conditions or []}
    if waiting_:
        status["containerStatuses"] = [
            {"name": "trainer-0", "ready": False, "state": {"waiting": waiting_}}
        ]
    return {"metadata": {"name": "p"}, "status": status}


def test_an_unschedulable_pod_says_the_schedulers_message():
    p = pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": MISSING_CLAIM}])  # fmt: skip
    assert waiting.pod_reason(p) == f"Unschedulable: {MISSING_CLAIM}"
    assert waiting.kind(waiting.pod_reason(p)) == "Unschedulable"


def test_image_pull_errors_name_the_image_and_are_one_kind():
    err = pod(reason="ErrImagePull", message='failed to pull image "nasop-trainer:typo": not found')
    backoff = pod(reason="ImagePullBackOff", message='Back-off pulling image "nasop-trainer:typo"')
    assert waiting.pod_reason(err).startswith("ErrImagePull: failed to pull image")
    assert "nasop-trainer:typo" in waiting.pod_reason(backoff)
    assert waiting.kind(waiting.pod_reason(err)) == waiting.kind(waiting.pod_reason(backoff))


def test_a_config_error_beats_a_container_that_is_merely_creating():
    creating = pod(reason="ContainerCreating")
    config = pod(reason="CreateContainerConfigError", message='secret "s3" not found')
    assert waiting.pod_reason(creating) == "ContainerCreating"
    assert waiting.pods_reason([creating, config]) == (
        'CreateContainerConfigError: secret "s3" not found'
    )
    assert waiting.pods_reason([creating]) == "ContainerCreating"
    assert waiting.pods_reason([]) == ""
    scheduled = pod([{"type": "PodScheduled", "status": "True"}])
    assert waiting.pod_reason(scheduled) == ""


def test_a_kueue_workload_without_quota_says_kueues_message():
    wl = {
        "metadata": {"name": "job-trial-0-abcde"},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "couldn't assign flavors to pod set main: insufficient unused "
                    "quota for cpu in flavor default-flavor, 1 more needed",
                }
            ]
        },
    }
    said = waiting.workload_reason(wl)
    assert said.startswith("WorkloadNotAdmitted: Kueue workload job-trial-0-abcde: couldn't")
    assert "insufficient unused quota for cpu" in said
    fresh = {"metadata": {"name": "w"}, "status": {}}
    assert "waiting for admission" in waiting.workload_reason(fresh)
    admitted = {"status": {"conditions": [{"type": "Admitted", "status": "True"}]}}
    assert waiting.workload_reason(admitted) == ""


def test_a_volcano_podgroup_says_why_it_is_not_running():
    pg = {
        "metadata": {"name": "trial-0-uid"},
        "spec": {"queue": "team-a"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "Unschedulable",
                    "status": "True",
                    "reason": "NotEnoughResources",
                    "message": "1/1 tasks in gang unschedulable: pod group is not ready, "
                    "1 Pending, 1 minAvailable",
                }
            ],
        },
    }
    assert waiting.podgroup_reason(pg).startswith("PodGroupUnschedulable: Volcano PodGroup")
    pg["status"]["conditions"] = []
    said = waiting.podgroup_reason(pg)
    assert waiting.kind(said) == "PodGroupNotAdmitted" and "'team-a'" in said
    pg["status"]["phase"] = "Running"
    assert waiting.podgroup_reason(pg) == ""


def test_a_reason_is_one_line_of_bounded_length():
    p = pod(reason="ErrImagePull", message="line one\n  line two " + "x" * 1000)
    said = waiting.pod_reason(p)
    assert "\n" not in said and "line one line two" in said
    assert len(said) <= waiting.MAX_LEN


def test_the_runner_says_a_pending_cluster_trial_waits_and_a_local_one_runs() -> None:
    from ax.core.base_trial import TrialStatus
    from torchx.specs import AppState, AppStatus

    from nasop import spec
    from nasop.trials.runner import TorchXTrialRunner

    template = spec.TrialTemplate().dump()
    cluster = TorchXTrialRunner("kubernetes_job", template, "/logs", "exp")
    said = f"Unschedulable: {MISSING_CLAIM}"
    obs = cluster._classify(None, "h", AppStatus(state=AppState.PENDING, msg=said))
    assert (obs.status, obs.pending, obs.reason) == (TrialStatus.RUNNING, True, said)
    obs = cluster._classify(None, "h", AppStatus(state=AppState.RUNNING))
    assert (obs.status, obs.pending) == (TrialStatus.RUNNING, False)
    local = TorchXTrialRunner("local_cwd", template, "/logs", "exp")
    obs = local._classify(None, "h", AppStatus(state=AppState.PENDING))
    assert (obs.status, obs.pending) == (TrialStatus.RUNNING, False)
