"""A distributed trial's AppDef: TorchX's dist.ddp form, rendered as TorchX would submit it."""

from __future__ import annotations

import shlex
import sys

from nasop import spec
from nasop.trials import appdef, batchjob
from nasop.trials.volcano import VolcanoScheduler

PARAMS = {"hidden_size_1": 16, "tag": "a$b"}


def _app(torchx_scheduler: str, **trial):
    template = spec.TrialTemplate.model_validate(trial)
    return appdef.trial_to_appdef(
        template,
        experiment="e",
        trial_index=3,
        parameters=PARAMS,
        log_dir="/tmp/nasop-e/trial-0003",
        scheduler=torchx_scheduler,
    )


def _volcano_job(app):
    scheduler = VolcanoScheduler("nasop", client=object())
    return scheduler.submit_dryrun(app, {"queue": "default", "namespace": "ns"}).request.resource


def _flags(line: str) -> dict[str, str]:
    words = shlex.split(line)
    return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and "=" not in w}


def test_one_process_trial_is_unchanged():
    role = _app("kubernetes").roles[0]
    assert (role.entrypoint, role.num_replicas) == ("python", 1)
    assert role.args[:2] == ["-m", "nasop_trainer"]


def test_two_replicas_are_one_gang_scheduled_volcano_job():
    app = _app("kubernetes", replicas=2, procsPerReplica=2)
    job = _volcano_job(app)
    tasks = job["spec"]["tasks"]
    assert job["spec"]["minAvailable"] == 2  # the gang: both pods or none
    # one failed replica ends the gang at once (not after torchrun's 5-minute exit barrier)
    assert job["spec"]["policies"] == [{"event": "PodFailed", "action": "TerminateJob"}]
    assert [t["name"] for t in tasks] == ["trainer-0", "trainer-1"]
    assert "svc" in job["spec"]["plugins"]  # Volcano's headless service: the pods' host names
    lines = {}
    for task in tasks:
        container = task["template"].spec.containers[0]
        assert container.command[:2] == ["bash", "-c"]
        assert [p.container_port for p in container.ports] == [appdef.RDZV_PORT]
        lines[task["name"]] = container.command[2]
    rank0, other = _flags(lines["trainer-0"]), _flags(lines["trainer-1"])
    assert rank0["--rdzv_endpoint"] == "${TORCHX_RANK0_HOST:=localhost}:29500"
    assert other["--rdzv_endpoint"] == "${VC_TRAINER_0_HOSTS:=localhost}:29500"
    for flags in (rank0, other):
        assert flags["--rdzv_backend"] == "c10d"
        assert flags["--nnodes"] == "2" and flags["--nproc_per_node"] == "2"
        assert flags["--rdzv_id"] == job["metadata"]["name"]  # one rendezvous per job
    # the trainer's own command line, each parameter intact ($ is not a macro)
    words = shlex.split(lines["trainer-1"])
    assert words[words.index("-m", 3) :] == [
        "-m",
        "nasop_trainer",
        "--hidden_size_1=16",
        "--tag=a$b",
    ]


def test_one_pod_several_processes_rendezvous_on_localhost():
    job = _volcano_job(_app("kubernetes", procsPerReplica=4))
    assert job["spec"]["minAvailable"] == 1 and "policies" not in job["spec"]
    (task,) = job["spec"]["tasks"]
    flags = _flags(task["template"].spec.containers[0].command[2])
    assert flags["--rdzv_endpoint"] == "localhost:0" and flags["--nproc_per_node"] == "4"


def test_job_scheduler_gets_macros_applied():
    app = _app("kubernetes_job", scheduler="job", procsPerReplica=2)
    job = batchjob.app_to_job(app, queue=None)
    container = job["spec"]["template"].spec.containers[0]
    line = container.command[2]
    assert "${app_id}" not in line and _flags(line)["--rdzv_id"] == job["metadata"]["name"]


def test_local_run_is_one_torchrun_with_every_rank_here():
    role = _app("local_cwd", replicas=2, procsPerReplica=2).roles[0]
    assert role.num_replicas == 1
    inner = role.args[role.args.index("--") + 1 :]
    assert inner[:3] == [sys.executable, "-m", "torch.distributed.run"]
    flags = dict(zip(inner[3:15:2], inner[4:16:2], strict=True))
    assert flags["--nnodes"] == "1" and flags["--nproc_per_node"] == "4"
    assert flags["--rdzv_endpoint"] == "localhost:0"


def test_a_program_that_is_not_python_runs_with_no_python():
    role = _app("kubernetes", procsPerReplica=2, command=["/opt/train"]).roles[0]
    words = shlex.split(role.args[1])
    assert words[words.index("--no-python") + 1] == "/opt/train"
