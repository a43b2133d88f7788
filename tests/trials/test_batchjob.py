"""The `kubernetes_job` TorchX scheduler: the Job it renders, how it reads a Job's state, and its
registration through TorchX's scheduler entry points. (On the real control plane:
tests/operator/test_batch_jobs.py.)"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
import tomllib
from torchx import schedulers
from torchx.specs import AppState

from nasop import errors, spec
from nasop.trials import appdef, batchjob, cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
OWNER = {
    "apiVersion": "nasop.dev/v1alpha1",
    "kind": "NASExperiment",
    "name": "exp",
    "uid": "u-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def _template(**trial: Any) -> spec.TrialTemplate:
    base = {
        "image": "trainer:1",
        "command": ["python", "-m", "nasop_trainer"],
        "resources": {"cpu": 2, "memMB": 3000, "gpu": 1},
        "logs": {"claimName": "nasop-logs", "mountPath": "/logs"},
        "scheduler": "job",
    }
    return spec.TrialTemplate.model_validate({**base, **trial})


def _job(template: spec.TrialTemplate, **cfg: Any) -> dict[str, Any]:
    app = appdef.trial_to_appdef(
        template,
        experiment="exp",
        trial_index=3,
        parameters={"lr": 0.1},
        log_dir="/logs/exp/trial-0003",
        scheduler=batchjob.NAME,
    )
    runner = cluster.runner_factory(
        None, owner=OWNER, labels={"app.kubernetes.io/managed-by": "nasop"}
    )
    info = runner.dryrun(app, batchjob.NAME, cfg={"namespace": "ml", **cfg})
    return batchjob.ks.sanitize_for_serialization(info.request.resource)


def test_job_carries_labels_owner_resources_and_log_volume() -> None:
    job = _job(_template())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    meta = job["metadata"]
    assert meta["name"].startswith("exp-t3-")
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "nasop",
        spec.EXPERIMENT_LABEL: "exp",
        spec.TRIAL_LABEL: "3",
    }
    assert meta["ownerReferences"] == [OWNER]
    js = job["spec"]
    assert js["backoffLimit"] == 0 and js["completions"] == js["parallelism"] == 1
    assert "suspend" not in js and "activeDeadlineSeconds" not in js
    assert js["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    pod = js["template"]
    assert pod["metadata"]["labels"][spec.TRIAL_LABEL] == "3"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "trainer:1"
    assert container["command"][:3] == ["python", "-m", "nasop_trainer"]
    assert "--lr=0.1" in container["command"]
    assert container["resources"]["limits"] == {
        "cpu": "2000m",
        "memory": "3000M",
        "nvidia.com/gpu": "1",
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NASOP_LOG_DIR"] == "/logs/exp/trial-0003" and env["NASOP_TRIAL_INDEX"] == "3"
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert [(claims[n], mounts[n]) for n in claims] == [("nasop-logs", "/logs")]


def test_a_fraction_of_a_core_is_requested_as_millicores_not_rounded_up() -> None:
    """`cpu: 0.5` was once sent as a whole core (int, at least 1): a 1000m limit."""
    job = _job(_template(resources={"cpu": 0.5, "memMB": 2048}))
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["cpu"] == "500m"
    assert resources["requests"]["cpu"] == "400m"  # TorchX keeps 100m for the node


def test_queued_job_is_suspended_with_kueue_label_and_deadline() -> None:
    job = _job(_template(queue="team-a"), queue="team-a", active_deadline_seconds=90)
    assert job["metadata"]["labels"][batchjob.QUEUE_LABEL] == "team-a"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 90


def test_job_validates_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    job = _job(_template(queue="q"), queue="q", active_deadline_seconds=5)
    job["metadata"]["namespace"] = "ml"
    kubernetes_validate.validate(job, "1.32", strict=True)


def _dryrun(template: spec.TrialTemplate) -> batchjob.BatchJobRequest:
    app = appdef.trial_to_appdef(
        template,
        experiment="exp",
        trial_index=3,
        parameters={"lr": 0.1},
        log_dir="/logs/exp/trial-0003",
        scheduler=batchjob.NAME,
    )
    runner = cluster.runner_factory(None, owner=OWNER, labels={"nasop.dev/experiment-uid": "u-1"})
    info = runner.dryrun(app, batchjob.NAME, cfg={"namespace": "ml", "queue": "q"})
    return info.request


def test_a_two_replica_trial_is_one_indexed_job_kueue_admits_whole() -> None:
    request = _dryrun(_template(replicas=2, queue="q"))
    job = batchjob.ks.sanitize_for_serialization(request.resource)
    name = job["metadata"]["name"]
    s = job["spec"]
    # one workload of two pods for Kueue; the first failed pod fails the Job
    assert (s["completionMode"], s["completions"], s["parallelism"]) == ("Indexed", 2, 2)
    assert s["suspend"] is True and s["backoffLimit"] == 0
    pod = s["template"]
    assert pod["spec"]["subdomain"] == "nasop-exp-u-1"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["TORCHX_RANK0_HOST"] == f"{name}-0.nasop-exp-u-1"
    # each replica's torchrun meets rank 0 there: TorchX's dist.ddp form, one pod each
    command = " ".join(pod["spec"]["containers"][0]["command"])
    for fragment in ("--nnodes 2", "${TORCHX_RANK0_HOST:=localhost}:29500", f"--rdzv_id {name}"):
        assert fragment in command, command
    assert "torchx.pytorch.org/replica-id" not in pod["metadata"]["labels"]  # not one per pod
    # the experiment's headless Service names the pods; it goes with the experiment
    svc = request.service
    assert svc is not None
    assert svc["metadata"]["name"] == "nasop-exp-u-1"
    assert svc["metadata"]["ownerReferences"] == [OWNER]
    assert svc["spec"] == {
        "clusterIP": "None",
        "selector": {"nasop.dev/experiment-uid": "u-1"},
        "publishNotReadyAddresses": True,
    }
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in (job, svc):
        kubernetes_validate.validate(
            {**obj, "metadata": {**obj["metadata"], "namespace": "ml"}}, "1.32", strict=True
        )


def test_a_one_pod_trial_has_no_service_and_no_index() -> None:
    request = _dryrun(_template(procsPerReplica=2, queue="q"))
    s = request.resource["spec"]
    assert request.service is None and "completionMode" not in s
    assert (s["completions"], s["parallelism"]) == (1, 1)


def test_service_names_are_dns_labels_and_tell_experiments_apart() -> None:
    long = {**OWNER, "name": "a" * 70 + ".x", "uid": "0123456789-abc"}
    name = batchjob.service_name(long, "job-1")
    assert len(name) <= 63 and name.startswith("nasop-aaa") and name.endswith("-01234567")
    assert batchjob.service_name({**long, "uid": "fedcba98"}, "job-1") != name
    assert batchjob.service_name(None, "job-1") == "job-1"  # TorchX used directly: per job


def test_a_failed_replica_is_named_from_its_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Core:
        def __init__(self, *_: Any) -> None:
            pass

        def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
            assert (namespace, label_selector) == ("ml", "batch.kubernetes.io/job-name=j")
            return SimpleNamespace(items=[_pod("0", "Running"), _pod("1", "Failed")])

    import kubernetes.client

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", _Core)
    sched = batchjob.BatchJobScheduler("s", client=object())
    failed = {
        "spec": {"completionMode": "Indexed"},
        "status": {"conditions": [_cond("Failed", "BackoffLimitExceeded")]},
    }
    monkeypatch.setattr(sched, "_get", lambda app_id: failed)
    described = sched.describe("ml:j")
    assert described is not None and described.state is AppState.FAILED
    [role] = described.roles_statuses
    assert [(r.id, r.state) for r in role.replicas] == [
        (0, AppState.RUNNING),
        (1, AppState.FAILED),
    ]


def _pod(index: str, phase: str) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(labels={batchjob.INDEX_LABEL: index}),
        status=SimpleNamespace(phase=phase),
    )


def _cond(ctype: str, reason: str = "", status: str = "True", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("job", "state", "words"),
    [
        ({}, AppState.PENDING, ""),
        ({"spec": {"suspend": True}}, AppState.PENDING, "Kueue"),
        (
            {
                "spec": {"suspend": True},
                "status": {"conditions": [_cond("Suspended", "JobSuspended")]},
            },
            AppState.PENDING,
            "suspended",
        ),
        # Kueue evicted (preempted) the workload: suspended again, pods gone, waiting to re-admit
        (
            {
                "spec": {"suspend": True},
                "status": {
                    "active": 0,
                    "failed": 0,
                    "conditions": [_cond("Suspended", "JobSuspended")],
                },
            },
            AppState.PENDING,
            "suspended",
        ),
        ({"status": {"active": 1}}, AppState.PENDING, "not ready"),
        ({"status": {"active": 1, "ready": 1}}, AppState.RUNNING, ""),
        ({"status": {"succeeded": 1}}, AppState.RUNNING, "finishing"),
        ({"status": {"failed": 1}}, AppState.RUNNING, "finishing"),
        (
            {
                "status": {
                    "conditions": [_cond("Suspended", status="False")],
                    "active": 1,
                    "ready": 1,
                }
            },
            AppState.RUNNING,
            "",
        ),
        (
            {
                "status": {
                    "conditions": [
                        _cond("SuccessCriteriaMet", "CompletionsReached"),
                        _cond("Complete", "CompletionsReached"),
                    ]
                }
            },
            AppState.SUCCEEDED,
            "",
        ),
        ({"status": {"conditions": [_cond("Complete")]}}, AppState.SUCCEEDED, ""),
        (
            {"status": {"conditions": [_cond("FailureTarget", "BackoffLimitExceeded")]}},
            AppState.FAILED,
            "pod failed",
        ),
        (
            {
                "status": {
                    "conditions": [
                        _cond(
                            "Failed",
                            "BackoffLimitExceeded",
                            message="Job has reached the specified backoff limit",
                        )
                    ]
                }
            },
            AppState.FAILED,
            "backoff limit",
        ),
        (
            {"status": {"conditions": [_cond("Failed", "DeadlineExceeded")]}},
            AppState.FAILED,
            "maxDuration",
        ),
        (
            {
                "status": {
                    "conditions": [
                        _cond(
                            "Failed",
                            "PodFailurePolicy",
                            message="Pod ml/p has condition DisruptionTarget matching FailJob rule",
                        )
                    ]
                }
            },
            AppState.CANCELLED,
            "evicted or preempted",
        ),
        (
            {"status": {"conditions": [_cond("FailureTarget", "PodFailurePolicy")]}},
            AppState.CANCELLED,
            "evicted",
        ),
        (
            {"status": {"conditions": [_cond("Failed", "MaxFailedIndexesExceeded")]}},
            AppState.FAILED,
            "MaxFailedIndexesExceeded",
        ),
        (
            {
                "status": {
                    "conditions": [_cond("Failed", "BackoffLimitExceeded", status="False")],
                    "active": 1,
                    "ready": 1,
                }
            },
            AppState.RUNNING,
            "",
        ),
        (
            {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"active": 1}},
            AppState.CANCELLED,
            "deleted",
        ),
        (
            {"status": {"conditions": [_cond("SomethingNew", "Why")], "active": 1, "ready": 1}},
            AppState.RUNNING,
            "",
        ),
    ],
)
def test_every_job_phase_and_condition_maps(
    job: dict[str, Any], state: AppState, words: str
) -> None:
    got, message = batchjob.job_state(job)
    assert got is state
    assert words in message


def test_runner_reports_an_eviction_as_an_infrastructure_interruption() -> None:
    """CANCELLED with the eviction message: the search retries the arm (not a user failure)."""
    from ax.core.base_trial import TrialStatus
    from torchx.specs import AppStatus

    from nasop.trials.runner import TorchXTrialRunner

    runner = TorchXTrialRunner(batchjob.NAME, _template().dump(), "/logs", "exp")
    evicted = {"status": {"conditions": [_cond("Failed", "PodFailurePolicy")]}}
    state, message = batchjob.job_state(evicted)
    obs = runner._classify(None, "h", AppStatus(state=state, msg=message))
    assert obs.status is TrialStatus.ABANDONED and obs.infrastructure
    assert "evicted or preempted" in obs.reason


def test_runner_passes_the_time_left_as_active_deadline() -> None:
    from nasop.trials.runner import TorchXTrialRunner

    seen: dict[str, Any] = {}

    class Recorder:
        def run(self, app: Any, scheduler: str, cfg: dict[str, Any]) -> str:
            seen.update(cfg)
            return f"{scheduler}://nasop/ml:x"

    class Trial:
        index = 0
        arm = type("Arm", (), {"parameters": {"lr": 0.1}})()

    runner = TorchXTrialRunner(
        batchjob.NAME,
        _template().dump(),
        "/logs",
        "exp",
        scheduler_cfg={"namespace": "ml", "queue": None},
    )
    runner.bind(lambda: Recorder())
    runner.deadline = time.time() + 41.2
    runner.run(Trial())
    assert seen == {"namespace": "ml", "queue": None, "active_deadline_seconds": 42}
    seen.clear()
    runner.deadline = math.inf  # no budget.maxDuration
    runner.run(Trial())
    assert seen == {"namespace": "ml", "queue": None}


# ------------------------------------------------------------------- spec and registration


def test_scheduler_and_queue_in_the_spec() -> None:
    default = spec.TrialTemplate()
    assert default.scheduler == "volcano" and default.queue is None
    assert default.volcano_queue == "default"
    assert cluster.scheduler_cfg(default, "ml") == {"namespace": "ml", "queue": "default"}
    job = spec.TrialTemplate(scheduler="job")
    assert cluster.kind_of(job) is cluster.BATCH
    assert cluster.scheduler_cfg(job, "ml") == {"namespace": "ml", "queue": None}
    with pytest.raises(Exception, match="volcano"):
        spec.TrialTemplate.model_validate({"scheduler": "kueue"})


def test_check_queue_is_a_no_op_without_a_queue() -> None:
    cluster.check_queue(None, spec.TrialTemplate(scheduler="job"), "ml")  # no API call
    cluster.check_queue(None, spec.TrialTemplate(queue="default"), "ml")  # volcano: no check
    assert errors.SpecError  # the missing-queue error is tested on the real API server


def _entry_points() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data["project"]["entry-points"]["torchx.schedulers"]


def test_entry_points_keep_torchx_schedulers_and_add_kubernetes_job() -> None:
    """Registering any entry point replaces TorchX's built-in list: all of it is listed again."""
    eps = _entry_points()
    builtin = {
        name: f"{module}:create_scheduler"
        for name, module in schedulers.DEFAULT_SCHEDULER_MODULES.items()
    }
    assert eps == {**builtin, batchjob.NAME: "nasop.trials.batchjob:create_scheduler"}


def test_torchx_loads_the_entry_points(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TorchX's own loader, reading a dist-info with pyproject's entry points, builds our scheduler
    (what `pip install nasop` registers) and keeps local_cwd."""
    dist = tmp_path / "nasop_eps-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nasop-eps\nVersion: 0.0.0\n")
    lines = ["[torchx.schedulers]"] + [f"{k} = {v}" for k, v in _entry_points().items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    factories = schedulers.get_scheduler_factories()
    assert {"local_cwd", "kubernetes", batchjob.NAME} <= set(factories)
    made = factories[batchjob.NAME]("s", client=object())
    assert isinstance(made, batchjob.BatchJobScheduler)
    assert sys.modules["nasop.trials.batchjob"] is batchjob


def test_list_shows_the_jobs_of_the_current_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client, config

    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="exp-t0-abc"),
        status=client.V1JobStatus(
            conditions=[client.V1JobCondition(type="Complete", status="True")]
        ),
    )
    seen: dict[str, Any] = {}

    class Batch:
        def list_namespaced_job(self, namespace: str, **kw: Any) -> Any:
            seen["namespace"] = namespace
            return client.V1JobList(items=[job])

    monkeypatch.setattr(
        config, "list_kube_config_contexts", lambda: ([], {"context": {"namespace": "ml"}})
    )
    scheduler = batchjob.BatchJobScheduler("s", client=client.ApiClient())
    monkeypatch.setattr(scheduler, "_batch", lambda: Batch())
    [listed] = scheduler.list()
    assert (listed.app_id, listed.state, seen["namespace"]) == (
        "ml:exp-t0-abc",
        AppState.SUCCEEDED,
        "ml",
    )
