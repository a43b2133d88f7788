"""Packed trials in a cluster: one Volcano job per pack, labelled with every member's index.

The real operator against the real API server (as tests/operator/test_operator.py); the Volcano
player runs each pack job's command (the fake trainer, which honours NASOP_PACK) on this machine.
"""

from __future__ import annotations

import json

import pytest
import volcano
from scenario import EXP, JOBS, crash_and_restart
from scenario import resource as _resource
from scenario import run_to as _run_to
from scenario import wait_phase as _wait_phase

pytestmark = [pytest.mark.operator, pytest.mark.cluster, pytest.mark.timeout(240)]
MEMBER = "nasop.dev/member-"


def _members_by_job(cluster, name):
    jobs = [
        j
        for j in cluster.list_objects(JOBS, "default")
        if j["metadata"]["labels"]["nasop.dev/experiment"] == name
    ]
    return [
        sorted(int(k[len(MEMBER) :]) for k in j["metadata"]["labels"] if k.startswith(MEMBER))
        for j in jobs
    ], jobs


def _packed(tmp_path, name, trials, **extra):
    res = _resource(
        tmp_path,
        name,
        budget={"maxTrials": trials, "parallelism": 1},
        optimizer={"method": "sobol", "seed": 1},
        **extra,
    )
    res["spec"]["trial"]["pack"] = {"maxTrials": 3}
    res["spec"]["trial"]["logs"]["claimName"] = "nasop-logs"  # packs stop members on a volume
    return res


@pytest.mark.asyncio
async def test_a_packed_search_runs_one_job_per_pack(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    obj = await _run_to(
        cluster, run_operator, _packed(tmp_path, "packed", 6), {"Succeeded", "Failed"}
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert obj["status"]["trials"]["completed"] == 6
    members, jobs = _members_by_job(cluster, "packed")
    assert len(jobs) < 6  # trials shared jobs
    assert sorted(i for m in members for i in m) == list(range(6))  # each trial in one job
    for job, indices in zip(jobs, members):
        assert job["metadata"]["labels"]["nasop.dev/trial"] == str(indices[0])
        task = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in task.get("env") or []}
        assert [m["trial"] for m in json.loads(env["NASOP_PACK"])] == indices
        assert not any(a.startswith("--hidden_size_1") for a in task.get("args") or [])
    # what the operator finds after a crash between submitting a pack and saving it: the job
    # holding a trial, and all of that job's members
    import kubernetes.client
    import kubernetes.config

    from nasop.trials import cluster as trial_jobs

    api = kubernetes.config.new_client_from_config(str(kubeconfig))
    for job, indices in zip(jobs, members):
        handle = f"kubernetes://nasop/default:{job['metadata']['name']}"
        for index in indices:
            found = trial_jobs.find_pack(api, trial_jobs.VOLCANO, "default", "packed", index)
            assert found == (handle, indices)
    assert trial_jobs.find_pack(api, trial_jobs.VOLCANO, "default", "packed", 99) is None


@pytest.mark.asyncio
async def test_operator_killed_and_restarted_mid_pack_runs_every_trial_once(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    res = _packed(tmp_path, "pack-restarts", 6)
    res["spec"]["trial"]["args"] = ["--sleep=0.2"]
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        cluster.create_object(EXP, res)
        await crash_and_restart(run_operator, 4)
        obj = await _wait_phase(cluster, "pack-restarts", {"Succeeded", "Failed"}, timeout=200)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    members, _ = _members_by_job(cluster, "pack-restarts")
    assert sorted(i for m in members for i in m) == list(range(6))  # none twice, none lost
    assert obj["status"]["trials"]["completed"] == 6
