"""The two images, built with Debian's Docker engine on a locally made base, and run.

- the trainer image runs a digits trial as UID 10001 with a read-only root filesystem, no network
  and no capabilities, and writes the trial contract's TensorBoard scalars into a mounted folder;
- the operator image, on the host network, as UID 10001 with a read-only root filesystem, drives a
  search on the real API server (as the chart's ServiceAccount, through the fault proxy) to
  Succeeded; the test plays Volcano as the operator tests do.

Build times and sizes are printed (`-s` shows them) for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from typing import Any

import pytest
import yaml

sys.path[:0] = [
    str(pathlib.Path(__file__).parent),
    str(pathlib.Path(__file__).resolve().parents[1] / "operator"),
]

import engine  # noqa: E402 - importable once tests/images is on sys.path (above)

pytestmark = [pytest.mark.image, pytest.mark.timeout(2400)]
RESTRICTED = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


def test_trainer_image_runs_a_digits_trial_as_10001_read_only(docker, trainer_image, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o777)  # the shared volume: writable by the trial's user
    params = {
        "hidden_size_1": 16,
        "hidden_size_2": 16,
        "learning_rate": 0.01,
        "dropout": 0.1,
        "batch_size": 64,
        "epochs": 2,
    }
    run = docker(
        "run",
        "--rm",
        "--network",
        "none",
        *RESTRICTED,
        "-v",
        f"{logs}:/logs",
        "-e",
        "NASOP_EXPERIMENT=image-test",
        "-e",
        "NASOP_TRIAL_INDEX=0",
        "-e",
        f"NASOP_PARAMS={json.dumps(params)}",
        "-e",
        "NASOP_LOG_DIR=/logs/trial-0",
        trainer_image,
        "python",
        "-m",
        "nasop_trainer",
        "--dataset",
        "digits",
        *[f"--{k}={v}" for k, v in params.items()],
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    user = docker("run", "--rm", "--network", "none", trainer_image, "id", "-u").stdout.strip()
    assert user == "10001"
    events = list((logs / "trial-0").rglob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in logs.rglob("*"))
    assert all(p.stat().st_uid == 10001 for p in events)
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert {"val_acc", "num_params"} <= set(scalars.Tags()["scalars"])
    accuracy = scalars.Scalars("val_acc")
    assert [e.step for e in accuracy] == [0, 1] and 0.0 < accuracy[-1].value <= 1.0
    (size,) = scalars.Scalars("num_params")
    assert size.value == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10  # the MLP's exact size


def test_operator_image_drives_a_search_to_succeeded(docker, operator_image, cluster, tmp_path):
    import controlplane
    import volcano
    from scenario import EXP, resource, trial_indexes

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(controlplane.kubeconfig(cluster.url, cluster.operator_token, None))
    )
    kubeconfig.chmod(0o644)
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o777)
    name = "in-a-container"
    container = f"nasop-operator-test-{os.getpid()}"
    res = resource(
        tmp_path,
        name,
        budget={"maxTrials": 4, "parallelism": 2},
        optimizer={"method": "sobol", "seed": 0},
    )
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        docker(
            "run",
            "-d",
            "--name",
            container,
            "--network",
            "host",
            *RESTRICTED,
            "-v",
            f"{kubeconfig}:/etc/nasop/kubeconfig:ro",
            "-e",
            "KUBECONFIG=/etc/nasop/kubeconfig",
            "-e",
            "NASOP_TICK_SECONDS=0.2",
            "-v",
            f"{logs}:{logs}",
            operator_image,
            "operator",
            "--namespace",
            "default",
            f"--log-root={logs}",
            f"--liveness-port={controlplane.free_port()}",
            f"--metrics-port={controlplane.free_port()}",
        )
        try:
            cluster.create_object(EXP, res)
            status = _wait_for_phase(cluster, docker, container, name, {"Succeeded", "Failed"})
        finally:
            output = docker("logs", container, check=False)
            docker("rm", "-f", container, check=False)
    assert status["phase"] == "Succeeded", (status, output.stdout[-3000:], output.stderr[-3000:])
    assert status["trials"]["completed"] == 4 and status["paretoFront"]
    assert trial_indexes(cluster, name) == [0, 1, 2, 3]


def _wait_for_phase(
    cluster: Any,
    docker: engine.Docker,
    container: str,
    name: str,
    phases: set[str],
    timeout: float = 300,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = cluster.get_object("nasop.dev/v1alpha1/nasexperiments", "default", name) or {}
        if (obj.get("status") or {}).get("phase") in phases:
            return obj["status"]
        state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip()
        assert state == "true", (
            "the operator container exited:\n"
            + docker("logs", container, check=False).stderr[-3000:]
        )
        time.sleep(0.5)
    raise AssertionError(f"{name} not in {phases} after {timeout}s")
