"""Build the TorchX AppDef of one trial: a pure function, so tests can assert on it.

The trial contract (docs/contract.md): `command + args + --<name>=<value>` per parameter, and
the environment NASOP_EXPERIMENT, NASOP_TRIAL_INDEX, NASOP_PARAMS (JSON), NASOP_LOG_DIR and
NASOP_TERMINATION_LOG (where the trial writes its final values: the container's termination
message in a cluster, a file beside the trial's markers locally).

A distributed trial (`trial.replicas` x `trial.procsPerReplica` > 1) runs that same command under
torchrun, in the form TorchX's `dist.ddp` component builds (torchx/components/dist.py): one role
of `replicas` replicas, each `bash -c "torchrun --rdzv_backend c10d --rdzv_endpoint
$RANK0_HOST:29500 --rdzv_id APP_ID --nnodes R --nproc_per_node P ..."`, the rank-0 host and the
app id being TorchX macros that its kubernetes scheduler fills in per replica (replica 0:
localhost; the others: the `VC_TRAINER_0_HOSTS` variable Volcano's svc plugin sets). On one
node (`replicas: 1`, or any local run, where all ranks run under one torchrun on this machine)
the endpoint is `localhost:0`, a free port, as `dist.ddp` does. Unlike `dist.ddp` it does not
`--tee`: torchrun's tee prefixes every line, which would hide rank 0's `NASOP1` lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from typing import Any, cast

from torchx import specs

from nasop import results, spec
from nasop.trials import local_markers

LOCAL_SCHEDULERS = ("local_cwd", "local_docker")
POD_TERMINATION_LOG = "/dev/termination-log"  # Kubernetes' default terminationMessagePath
TERMINATION_FILE = "termination-log"  # a local trial's, in its marker folder


def trial_log_dir(log_root: str, experiment: str, trial_index: int) -> str:
    """Unique per trial, under the shared log volume."""
    return os.path.join(log_root, experiment, f"trial-{trial_index:04d}")


def trial_index_of(log_dir: str) -> int:
    """The trial index a log dir of `trial_log_dir` names."""
    return int(os.path.basename(log_dir.rstrip("/")).removeprefix("trial-"))


def app_name(experiment: str, trial_index: int) -> str:
    """A DNS-1123 name: Volcano job names must be lowercase and short."""
    base = re.sub(r"[^a-z0-9-]", "-", experiment.lower()).strip("-")[:40] or "nasop"
    return f"{base}-t{trial_index}"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def trial_argv(template: spec.TrialTemplate, parameters: dict[str, Any], local: bool) -> list[str]:
    """The full command line; locally `python` means this interpreter (the venv's)."""
    command = list(template.command)
    if local and command[0] in ("python", "python3"):
        command[0] = sys.executable
    params = [f"--{k}={format_value(v)}" for k, v in sorted(parameters.items())]
    return command + list(template.args) + params


def trial_env(
    template: spec.TrialTemplate,
    *,
    experiment: str,
    trial_index: int,
    parameters: dict[str, Any],
    log_dir: str,
) -> dict[str, str]:
    env = dict(template.env)
    env.update(
        {
            "NASOP_EXPERIMENT": experiment,
            "NASOP_TRIAL_INDEX": str(trial_index),
            "NASOP_PARAMS": json.dumps(parameters, sort_keys=True),
            "NASOP_LOG_DIR": log_dir,
        }
    )
    return env


RDZV_PORT = 29500  # dist.ddp's default: the c10d store on the rank-0 pod


def _is_python(program: str) -> bool:
    return os.path.basename(program).startswith("python")


def torchrun_argv(
    argv: list[str],
    *,
    nnodes: int,
    nproc_per_node: int,
    rdzv_endpoint: str,
    rdzv_id: str,
    python: str = "python",
) -> list[str]:
    """`argv` launched by torchrun (`python -m torch.distributed.run`, with the interpreter of
    `python -m X` / `python FILE` commands; any other program under `python` with
    `--no-python`)."""
    if _is_python(argv[0]):
        python, program = argv[0], argv[1:]
    else:
        program = ["--no-python", *argv]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        rdzv_endpoint,
        "--rdzv_id",
        rdzv_id,
        "--nnodes",
        str(nnodes),
        "--nproc_per_node",
        str(nproc_per_node),
        *program,
    ]


def distributed_command(
    template: spec.TrialTemplate, argv: list[str], *, local: bool
) -> tuple[str, list[str]]:
    """The entrypoint and args of a distributed trial's replicas.

    Locally: one torchrun with every rank on this machine. In a cluster: `bash -c` with TorchX's
    macros for the rank-0 host and the app id, so every replica joins the same rendezvous.
    """
    if local:
        full = torchrun_argv(
            argv,
            nnodes=1,
            nproc_per_node=template.world_size,
            rdzv_endpoint="localhost:0",
            rdzv_id=specs.macros.app_id,
            python=sys.executable,
        )
        return full[0], full[1:]
    if template.replicas == 1:
        endpoint = "localhost:0"
    else:  # "$${VAR:=localhost}:29500" after TorchX names VAR: bash expands it in the pod
        endpoint = f"$${{{specs.macros.rank0_env}:=localhost}}:{RDZV_PORT}"
    full = torchrun_argv(
        argv,
        nnodes=template.replicas,
        nproc_per_node=template.procs_per_replica,
        rdzv_endpoint="@ENDPOINT@",
        rdzv_id="@APPID@",
    )
    # TorchX substitutes macros in args as a string.Template: a literal $ must be doubled
    quoted = [shlex.quote(a).replace("$", "$$") for a in full]
    line = " ".join(quoted)
    line = line.replace("@ENDPOINT@", endpoint).replace("@APPID@", specs.macros.app_id)
    return "bash", ["-c", line]


def trainer_role(
    template: spec.TrialTemplate,
    argv: list[str],
    env: dict[str, str],
    *,
    scheduler: str,
    log_dir: str,
    local_env: dict[str, str] | None = None,
) -> specs.Role:
    """The one role of a trial or a pack: local runs wrapped (exit markers in `log_dir`) and given
    `local_env`; cluster runs mount the shared log claim. Never retried by TorchX: nasop decides."""
    local = scheduler in LOCAL_SCHEDULERS
    if template.distributed:
        entrypoint, args = distributed_command(template, argv, local=local)
        argv = [entrypoint, *args]
    if local:
        argv = local_markers.wrap(argv, log_dir)
    termination = (
        os.path.join(local_markers.marker_dir(log_dir), TERMINATION_FILE)
        if local
        else POD_TERMINATION_LOG
    )
    env = {**env, results.TERMINATION_ENV: termination}
    mounts: list[Any] = []
    if not local and template.logs.claim_name:
        mounts.append(
            specs.VolumeMount(src=template.logs.claim_name, dst_path=template.logs.mount_path)
        )
    res = template.resources
    entrypoint, args = argv[0], argv[1:]
    replicas = 1
    ports: dict[str, int] = {}
    if template.distributed:
        env.setdefault("LOGLEVEL", "WARNING")  # torchrun's own chatter, as dist.ddp sets it
        replicas = 1 if local else template.replicas
        if replicas > 1:
            ports = {"c10d": RDZV_PORT}
    return specs.Role(
        name="trainer",
        image=os.getcwd() if scheduler == "local_cwd" else template.image,
        entrypoint=entrypoint,
        args=args,
        env={**env, **((local_env or {}) if local else {})},
        num_replicas=replicas,
        # TorchX types cpu as int but turns it into millicores (int(cpu * 1000)): a fraction of
        # a core is kept, not rounded to a whole one (`cpu: 0.5` -> a 500m limit)
        resource=specs.Resource(cpu=cast(int, res.cpu), gpu=res.gpu, memMB=res.mem_mb),
        port_map=ports,
        mounts=mounts,
        max_retries=0,
    )


def trial_to_appdef(
    template: spec.TrialTemplate,
    *,
    experiment: str,
    trial_index: int,
    parameters: dict[str, Any],
    log_dir: str,
    scheduler: str,
    local_env: dict[str, str] | None = None,
) -> specs.AppDef:
    """The AppDef of one trial (one role: one replica, or `trial.replicas` running torchrun);
    `local_env` is added to a local trial's
    environment (the fork server's socket), never to a cluster's."""
    local = scheduler in LOCAL_SCHEDULERS
    env = trial_env(
        template,
        experiment=experiment,
        trial_index=trial_index,
        parameters=parameters,
        log_dir=log_dir,
    )
    role = trainer_role(
        template,
        trial_argv(template, parameters, local),
        env,
        scheduler=scheduler,
        log_dir=log_dir,
        local_env=local_env,
    )
    return specs.AppDef(
        name=app_name(experiment, trial_index),
        roles=[role],
        metadata={spec.EXPERIMENT_LABEL: experiment, spec.TRIAL_LABEL: str(trial_index)},
    )


__all__ = [
    "POD_TERMINATION_LOG",
    "RDZV_PORT",
    "TERMINATION_FILE",
    "app_name",
    "distributed_command",
    "format_value",
    "torchrun_argv",
    "trainer_role",
    "trial_argv",
    "trial_index_of",
    "trial_log_dir",
    "trial_to_appdef",
]
