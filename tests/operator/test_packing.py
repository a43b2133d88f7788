"""Packed trials in a cluster: one Volcano job per pack, labelled with every member's index.

The real operator against the real API server (as tests/operator/test_operator.py); the Volcano
player runs each pack job's command (the fake trainer, which honours NASOP_PACK) on this machine,
projecting the ConfigMaps its pod mounts as a kubelet does. No claim anywhere: members report
through the pod's log and termination message and are stopped through the experiment's stops
ConfigMap.
"""

from __future__ import annotations

import json

import pytest
import volcano
from scenario import CONFIGMAPS, EXP, HANDLERS, JOBS, crash_and_restart, events, wait_for
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


@pytest.mark.asyncio
async def test_a_pack_member_is_stopped_through_the_stops_configmap(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """One pack of 3, run one member after another; a threshold no trial reaches stops every
    member once one curve is complete: the first completes, the other two are asked to stop
    through the ConfigMap their pod mounts and end `stopped` at their next epoch; the pack's
    job then has nothing left to train."""
    res = _packed(tmp_path, "pack-stops", 3)
    res["spec"]["searchSpace"][-1] = {"name": "epochs", "type": "fixed", "value": 8}
    res["spec"]["earlyStopping"] = {
        "metric": "val_acc",
        "threshold": 0.999,
        "minProgression": 1,
        "minCurves": 1,
    }
    res["spec"]["trial"]["args"] = ["--sleep=0.4"]
    with volcano.VolcanoPlayer(cluster, volcano.run_command(cluster=cluster)) as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)
        [job] = await wait_for(lambda: _members_by_job(cluster, "pack-stops")[1], "the pack job")
        obj = await _wait_phase(cluster, "pack-stops", {"Succeeded", "Failed"}, timeout=150)
    assert not player.errors
    trials = obj["status"]["trials"]
    assert (trials["completed"], trials["earlyStopped"], trials["failed"]) == (1, 2, 0), trials
    # the pack's job is deleted once no member is left to train (all ended or asked to stop)
    assert not _members_by_job(cluster, "pack-stops")[1]
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    assert {
        "name": "nasop-stops",
        "configMap": {"name": "pack-stops-nasop-stops", "optional": True},
    } in pod["volumes"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])  # no claim at all
    stops = cluster.get_object(CONFIGMAPS, "default", "pack-stops-nasop-stops")
    assert sorted(stops["data"]) == ["stop-1", "stop-2"], stops["data"]
    assert stops["metadata"]["ownerReferences"][0]["kind"] == "NASExperiment"
    told = await wait_for(
        lambda: (found := events(cluster, "TrialEarlyStopped", "pack-stops")) and len(found) >= 2
        and found,
        "two TrialEarlyStopped events",
        10,
    )  # fmt: skip
    assert len(told) == 2, [e["message"] for e in told]
    # the first stopped member said so itself (its `end` line): the request reached the pod
    # (the last one's pack may be cancelled first, once no member is left to train)
    logs = "".join(
        log.text()
        for (ns, pod), log in cluster.proxy.pod_logs.items()
        if ns == "default" and pod.startswith(job["metadata"]["name"])
    )
    ends = [json.loads(line.split(" ", 1)[1]) for line in logs.splitlines() if '"end"' in line]
    assert [(e["m"], e["end"]) for e in ends][:2] == [(0, "completed"), (1, "stopped")], ends
    assert "val_acc" in ends[1]["reason"], ends[1]  # the rule that fired, as the operator wrote it
