"""Distributed trials through the real operator: one gang-scheduled Volcano job per trial.

The real operator against the real API server (as test_operator.py). The Volcano player starts
a job's tasks together, as Volcano starts a gang, and runs each task's real container command:
`bash -c "python -m torch.distributed.run ... fake_trainer.py"`, TorchX's dist.ddp form with
its macros filled in by TorchX's kubernetes scheduler. The two replicas' torchruns meet at the
c10d rendezvous (on this one host both resolve the rank-0 host to localhost; on a cluster,
replica 1 reads Volcano's VC_TRAINER_0_HOSTS), their ranks all-reduce in one gloo group, and
only rank 0 reports.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

import pytest
import volcano
from scenario import EXP, HANDLERS, jobs_of, trial_indexes, wait_for, wait_phase
from scenario import resource as _resource
from scenario import run_to as _run_to

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]


class Recording:
    """Runs every job's tasks together and keeps each task's log, by job name."""

    def __init__(self) -> None:
        self.run = volcano.run_command(together=True, timeout=150)
        self.logs: dict[str, dict[str, str]] = {}

    def __call__(
        self,
        job: Mapping[str, Any],
        cancelled: threading.Event,
        logs: Mapping[str, Any] | None = None,
    ) -> volcano.JobOutcome:
        result = self.run(job, cancelled, logs=logs)
        self.logs[job["metadata"]["name"]] = {
            task: log if isinstance(log, str) else log.text() for task, log in result.logs.items()
        }
        return result


def _distributed(tmp_path, name: str, trials: int, args: list[str] | None = None):
    res = _resource(
        tmp_path,
        name,
        # one trial at a time: on this one host every trial's rendezvous is localhost:29500
        budget={"maxTrials": trials, "parallelism": 1, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 1},
    )
    res["spec"]["trial"].update(replicas=2, args=args or [])
    return res


@pytest.mark.asyncio
async def test_two_replica_trials_are_gang_jobs_that_train_together(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    recording = Recording()
    obj = await _run_to(
        cluster,
        run_operator,
        _distributed(tmp_path, "ddp", 2),
        {"Succeeded", "Failed"},
        outcome=recording,
    )
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert st["trials"]["completed"] == 2 and st["paretoSize"] > 0
    jobs = jobs_of(cluster, "ddp")
    assert len(jobs) == 2
    for job in jobs:
        spec = job["spec"]
        assert spec["minAvailable"] == 2  # the gang: Volcano starts both pods or neither
        assert [t["name"] for t in spec["tasks"]] == ["trainer-0", "trainer-1"]
        assert all(t["replicas"] == 1 for t in spec["tasks"])
        logs = recording.logs[job["metadata"]["name"]]
        # both ranks joined one process group: each all-reduced 1 + 2. c10d numbers the
        # replicas in its own order (not the task's), so rank 0 may be either pod.
        ranks = {task: re.findall(r"rank (\d)/2 allreduce=3", log) for task, log in logs.items()}
        assert sorted(r for found in ranks.values() for r in found) == ["0", "1"], logs
        for task, found in ranks.items():
            assert ("NASOP1 " in logs[task]) == (found == ["0"]), logs  # rank 0 alone reports


@pytest.mark.asyncio
async def test_a_failing_replica_fails_the_trial_and_is_named(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    recording = Recording()
    obj = await _run_to(
        cluster,
        run_operator,
        _distributed(tmp_path, "ddp-fail", 1, ["--fail-rank=1"]),
        {"Succeeded", "Failed"},
        outcome=recording,
    )
    st = obj["status"]
    assert st["phase"] == "Failed", st
    assert st["trials"]["failed"] == 1, st
    (logs,) = recording.logs.values()
    failing = next(task for task, log in logs.items() if "rank 1 asked to fail" in log)
    replica = failing.rpartition("-")[2]  # c10d may give rank 1 to either pod
    reason = (
        f"replica {replica} of 2 failed: fake trainer: rank 1 asked to fail (rank 1, exit code 3)"
    )
    assert reason in st["message"], (st["message"], logs)


@pytest.mark.asyncio
async def test_an_operator_crash_during_a_multi_pod_trial_launches_nothing_twice(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    gate = volcano.Gate(then=volcano.run_command(together=True, timeout=150))
    with volcano.VolcanoPlayer(cluster, gate):
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, _distributed(tmp_path, "ddp-crash", 2))
        await wait_for(lambda: jobs_of(cluster, "ddp-crash"), "the first trial's job", 60)
        await handle.cancel()  # the operator dies while the gang's pods run
        await run_operator(modules=HANDLERS, watching=[EXP])
        gate.open()
        obj = await wait_phase(cluster, "ddp-crash", {"Succeeded", "Failed"}, timeout=200)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert trial_indexes(cluster, "ddp-crash") == [0, 1]  # re-attached, not launched again
    assert all(j["spec"]["minAvailable"] == 2 for j in jobs_of(cluster, "ddp-crash"))
