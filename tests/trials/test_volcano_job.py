"""The Volcano job nasop submits, as TorchX's dry run renders it (no cluster needed)."""

from __future__ import annotations

from typing import Any

from torchx import specs

from nasop.trials.volcano import VolcanoScheduler, gang_replica_states


def test_every_task_must_succeed_without_relying_on_volcanos_webhook() -> None:
    app = specs.AppDef(
        "trial",
        roles=[
            specs.Role(
                "trainer",
                image="nasop-trainer:0.1.0",
                entrypoint="python",
                args=["-m", "nasop_trainer"],
                resource=specs.Resource(cpu=1, gpu=0, memMB=1024),
            )
        ],
        metadata={"nasop.dev/experiment": "e", "nasop.dev/trial": "3"},
    )
    scheduler = VolcanoScheduler(
        "nasop",
        client=object(),
        owner={"kind": "NASExperiment"},
        labels={"app.kubernetes.io/managed-by": "nasop"},
    )
    job = scheduler.submit_dryrun(app, {"queue": "default", "namespace": "ns"}).request.resource
    assert job["spec"]["minAvailable"] == 1  # TorchX leaves 0: a failed pod would read Completed
    assert job["metadata"]["labels"]["nasop.dev/trial"] == "3"
    assert job["metadata"]["ownerReferences"] == [{"kind": "NASExperiment"}]
    pod_labels = job["spec"]["tasks"][0]["template"].metadata.labels
    assert pod_labels["nasop.dev/experiment"] == "e"


def _pod(name: str, replica: str, phase: str, exit_code: int | None = None) -> Any:
    from kubernetes import client as k8s

    state = (
        k8s.V1ContainerState(
            terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, reason="Error")
        )
        if exit_code is not None
        else k8s.V1ContainerState(running=k8s.V1ContainerStateRunning())
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            name=name,
            labels={
                "torchx.pytorch.org/role-name": "trainer",
                "torchx.pytorch.org/replica-id": replica,
            },
        ),
        status=k8s.V1PodStatus(
            phase=phase,
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="trainer",
                    image="i",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=state,
                )
            ],
        ),
    )


def test_a_terminated_gang_names_its_failed_replica_from_the_pod_volcano_kept() -> None:
    """What the real node showed (tests/node): replica 1 SIGKILLed, Volcano's TerminateJob
    deleted replica 0's pod and kept the failed one, and the job's status had no
    taskStatusCount left."""
    job = {"spec": {"tasks": [{"name": "trainer-0"}, {"name": "trainer-1"}]}}
    pods = [
        _pod("j-trainer-0-0", "0", "Running"),  # being deleted
        _pod("j-trainer-1-0", "1", "Failed", exit_code=137),
        _pod("other", "x", "Failed", exit_code=1),  # not a replica
    ]
    (role,) = gang_replica_states(job, pods)
    assert role.role == "trainer"
    assert [(r.id, r.state) for r in role.replicas] == [
        (0, specs.AppState.CANCELLED),
        (1, specs.AppState.FAILED),
    ]
    assert role.replicas[1].structured_error_msg == (
        "pod j-trainer-1-0 exited with code 137 (SIGKILL, Error)"
    )
    # no failed pod (all deleted): nothing to say, the job's own counts stand
    assert gang_replica_states(job, [_pod("j-trainer-0-0", "0", "Succeeded", exit_code=0)]) == []
