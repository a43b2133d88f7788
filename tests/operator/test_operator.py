"""The real operator (kopf + engine + TorchX kubernetes scheduler) against a real API server.

kopf runs in-process as the chart's ServiceAccount (so the server enforces the chart's RBAC),
through the fault proxy of tests/cluster/proxy.py. No Volcano controller or node runs yet, so the
tests play Volcano: `volcano.VolcanoPlayer` watches the jobs the operator creates and runs
each job's real container command (the fake trainer) on this machine, then sets the job's
status as Volcano would. Trial logs go to a tmp directory that stands in for the shared volume.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import volcano
from scenario import EXP, HANDLERS, JOBS, ConditionTrail, assert_kstatus, crash_and_restart
from scenario import resource as _resource
from scenario import run_to as _run_to
from scenario import trial_indexes as _trial_indexes
from scenario import wait_phase as _wait_phase

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]


@pytest.mark.asyncio
async def test_search_runs_to_succeeded_with_pareto_front(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    async with ConditionTrail(cluster, "mnist-a") as trail:
        obj = await _run_to(
            cluster,
            run_operator,
            _resource(
                tmp_path,
                "mnist-a",
                budget={"maxTrials": 5, "parallelism": 2},
                optimizer={"initialTrials": 3, "seed": 0},
            ),
            {"Succeeded", "Failed"},
            completing=True,
        )
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert trail.of("Ready") == [("False", "Running"), ("True", "Succeeded")]
    assert trail.of("Reconciling") == [("True", "Running"), ("False", "Succeeded")]
    assert {s for s, _ in trail.of("Stalled")} == {"False"}
    assert_kstatus(obj)
    assert st["trials"]["total"] == 5 and st["trials"]["completed"] == 5
    assert st["paretoSize"] == len(st["paretoFront"]) > 0 and st["hypervolume"] > 0
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    jobs = cluster.list_objects(JOBS, "default")
    assert len(jobs) == 5
    uid = obj["metadata"]["uid"]
    for job in jobs:
        assert job["metadata"]["labels"]["nasop.dev/experiment"] == "mnist-a"
        assert job["metadata"]["ownerReferences"][0]["uid"] == uid
        assert job["spec"]["queue"] == "default"
    trials = sorted(int(j["metadata"]["labels"]["nasop.dev/trial"]) for j in jobs)
    assert trials == [0, 1, 2, 3, 4]  # every trial index launched exactly once
    cms = [
        c
        for c in cluster.list_objects("v1/configmaps", "default")
        if c["metadata"]["name"] != "kube-root-ca.crt"
    ]  # published in every namespace
    assert [c["metadata"]["ownerReferences"][0]["uid"] for c in cms] == [uid]
    for _ in range(100):  # kopf posts events in the background
        reasons = {e.get("reason") for e in cluster.list_objects("v1/events", "default")}
        if {"TrialLaunched", "TrialCompleted", "SearchSucceeded"} <= reasons:
            break
        await asyncio.sleep(0.05)
    assert {"TrialLaunched", "TrialCompleted", "SearchSucceeded"} <= reasons


@pytest.mark.asyncio
async def test_invalid_manifest_is_marked_invalid_and_others_still_run(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    bad = _resource(tmp_path, "bad")
    bad["spec"]["searchSpace"][0]["bounds"] = [128, 16]
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, bad)
        cluster.create_object(
            EXP,
            _resource(
                tmp_path,
                "good",
                budget={"maxTrials": 2, "parallelism": 2},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        obj = await _wait_phase(cluster, "bad", {"Invalid"})
        assert "spec.searchSpace[0]" in obj["status"]["message"]
        assert "reversed" in obj["status"]["message"]
        assert_kstatus(obj)
        conds = {c["type"]: c for c in obj["status"]["conditions"]}
        assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "Invalid")
        assert "spec.searchSpace[0]" in conds["Stalled"]["message"]
        assert (conds["Ready"]["status"], conds["Reconciling"]["status"]) == ("False", "False")
        assert (conds["SpecAccepted"]["status"], conds["SpecAccepted"]["reason"]) == (
            "False",
            "InvalidSpec",
        )
        await _wait_phase(cluster, "good", {"Succeeded"})
    assert not [
        j
        for j in cluster.list_objects(JOBS, "default")
        if j["metadata"]["labels"]["nasop.dev/experiment"] == "bad"
    ]
    warnings = [
        e for e in cluster.list_objects("v1/events", "default") if e.get("reason") == "InvalidSpec"
    ]
    assert warnings


@pytest.mark.asyncio
async def test_failed_jobs_fail_the_search_past_max_failed(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Trial 0 runs until cancelled, every other trial fails: the second failure fails the
    search, and trial 0's job is cancelled (deleted), not left running."""
    hold = volcano.Gate()  # never opened

    def outcome(job, cancelled):
        if job["metadata"]["labels"]["nasop.dev/trial"] == "0":
            return hold(job, cancelled)
        return volcano.fail(job)

    async with ConditionTrail(cluster, "doomed") as trail:
        obj = await _run_to(
            cluster,
            run_operator,
            _resource(
                tmp_path,
                "doomed",
                budget={"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 1},
                optimizer={"method": "sobol", "seed": 0},
            ),
            {"Failed"},
            outcome=outcome,
        )
    assert "maxFailedTrials" in obj["status"]["message"]
    assert trail.of("Ready") == [("False", "Running"), ("False", "Failed")]
    assert trail.of("Reconciling") == [("True", "Running"), ("False", "Failed")]
    assert trail.of("Stalled") == [("False", "Running"), ("True", "Failed")]
    assert_kstatus(obj)
    stalled = {c["type"]: c for c in obj["status"]["conditions"]}["Stalled"]
    assert "maxFailedTrials" in stalled["message"]
    assert obj["status"]["trials"]["failed"] >= 2
    deadline = time.monotonic() + 20
    while 0 in _trial_indexes(cluster, "doomed") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert 0 not in _trial_indexes(cluster, "doomed")  # the running trial's job was deleted


@pytest.mark.asyncio
async def test_operator_killed_and_restarted_runs_every_trial_once(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    res = _resource(
        tmp_path,
        "restarts",
        budget={"maxTrials": 8, "parallelism": 2},
        optimizer={"method": "sobol", "seed": 1},
    )
    res["spec"]["trial"]["args"] = ["--sleep=0.3"]
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        cluster.create_object(EXP, res)
        await crash_and_restart(run_operator, 5)
        obj = await _wait_phase(cluster, "restarts", {"Succeeded", "Failed"}, timeout=200)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    jobs = cluster.list_objects(JOBS, "default")
    indexes = sorted(int(j["metadata"]["labels"]["nasop.dev/trial"]) for j in jobs)
    assert indexes == list(range(8)), indexes  # no index launched twice, none lost
    assert obj["status"]["trials"]["completed"] == 8


@pytest.mark.asyncio
async def test_rbac_in_the_chart_covers_every_call_the_operator_makes(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Derive the operator's API calls from a real run and check the chart's list covers them."""
    import pathlib

    import yaml

    await _run_to(
        cluster,
        run_operator,
        _resource(
            tmp_path,
            "rbac",
            budget={"maxTrials": 2, "parallelism": 2},
            optimizer={"method": "sobol", "seed": 0},
        ),
        {"Succeeded"},
        completing=True,
    )
    required_file = pathlib.Path(__file__).parents[1] / "packaging" / "required_api_calls.yaml"
    required = yaml.safe_load(required_file.read_text())["calls"]
    granted = {(c["group"], c["resource"], v) for c in required for v in c["verbs"]}
    used = {
        (c.group, c.resource, c.verb)
        for c in cluster.operator_calls()
        if not c.resource.startswith("nonResourceURL:")
    }  # discovery: every user may
    missing = sorted(used - granted)
    assert not missing, f"the operator made calls the chart does not grant: {missing}"
    # the calls at the heart of the operator were really observed
    for call in [
        ("nasop.dev", "nasexperiments/status", "patch"),
        ("batch.volcano.sh", "jobs", "create"),
        ("", "configmaps", "create"),
        ("", "configmaps", "update"),
    ]:
        assert call in used, (call, sorted(used))


@pytest.mark.asyncio
async def test_max_trials_raised_after_success_resumes_the_search(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            _resource(
                tmp_path,
                "grow",
                budget={"maxTrials": 2, "parallelism": 2},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        await _wait_phase(cluster, "grow", {"Succeeded"})
        cluster.patch_object(EXP, "default", "grow", {"spec": {"budget": {"maxTrials": 4}}})
        await _wait_phase(cluster, "grow", {"Running"}, timeout=30)
        obj = await _wait_phase(cluster, "grow", {"Succeeded"})
    assert obj["status"]["trials"]["completed"] == 4
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


@pytest.mark.asyncio
async def test_search_space_change_is_refused_by_the_server_and_the_search_goes_on(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """The CRD's CEL rule (`self == oldSelf`) makes the API server itself refuse the change, with
    the field in the message; the search goes on with the space it started with."""
    from controlplane import ApiError

    res = _resource(
        tmp_path,
        "frozen",
        budget={"maxTrials": 4, "parallelism": 1},
        optimizer={"method": "sobol", "seed": 0},
    )
    res["spec"]["trial"]["args"] = ["--sleep=0.3"]
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)
        await _wait_phase(cluster, "frozen", {"Running"})
        space = [dict(p) for p in res["spec"]["searchSpace"]]
        space[0]["bounds"] = [16, 64]
        for change in ({"searchSpace": space}, {"objectives": res["spec"]["objectives"][:1]}):
            with pytest.raises(ApiError) as refused:
                cluster.patch_object(EXP, "default", "frozen", {"spec": change})
            field = next(iter(change))
            assert refused.value.code == 422 and f"spec.{field}" in refused.value.message
            assert "immutable" in refused.value.message
        obj = await _wait_phase(cluster, "frozen", {"Succeeded"})
    assert obj["spec"]["searchSpace"] == res["spec"]["searchSpace"]
    assert obj["metadata"]["generation"] == 1
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds.get("SpecAccepted", {}).get("status") != "False", conds
    assert obj["status"]["trials"]["completed"] == 4  # the search went on with the old space


@pytest.mark.asyncio
async def test_failed_and_vanished_jobs_and_the_search_carries_on(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """Trial 1's trainer exits non-zero (counts against maxFailedTrials=1, the search goes on);
    trial 2's job disappears while running: its output is lost, so it fails with that reason,
    not counted and not run again (a new trial takes its place)."""
    run = volcano.run_command()

    def outcome(job, cancelled):
        index = job["metadata"]["labels"]["nasop.dev/trial"]
        if index == "1":
            return volcano.JobOutcome(
                "Failed",
                exit_codes={"trainer-0": 3},
                logs={"trainer-0": "boom: trainer exited 3\n"},
            )
        if index == "2":
            cluster.delete_object(JOBS, "default", job["metadata"]["name"])
            return volcano.JobOutcome("Aborted")
        return run(job, cancelled)

    obj = await _run_to(
        cluster,
        run_operator,
        _resource(
            tmp_path,
            "bumpy",
            budget={"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 1},
            optimizer={"method": "sobol", "seed": 0},
        ),
        {"Succeeded", "Failed"},
        outcome=outcome,
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    trials = obj["status"]["trials"]
    assert trials["completed"] == 3 and trials["failed"] == 2 and trials["total"] == 5

    def params(job):
        env = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["env"]
        return next(e["value"] for e in env if e["name"] == "NASOP_PARAMS")

    jobs = {
        int(j["metadata"]["labels"]["nasop.dev/trial"]): j
        for j in cluster.list_objects(JOBS, "default")
    }
    assert 2 not in jobs  # it vanished
    events = cluster.list_objects("v1/events", "default")
    [vanished] = [e["message"] for e in events if e.get("reason") == "TrialInterrupted"]
    assert vanished.startswith("trial 2: ") and "deleted before" in vanished, vanished
    assert vanished.endswith("; not retried"), vanished
    failed = [e for e in events if e.get("reason") == "TrialFailed"]
    assert len(failed) == 1 and "trial 1 failed" in failed[0]["message"]
    assert "boom: trainer exited 3" in failed[0]["message"]  # the last log line, via pods/log
    launched = [e["message"] for e in events if e.get("reason") == "TrialLaunched"]
    assert not [m for m in launched if "retry of" in m], launched
    assert sorted(jobs) == [0, 1, 3, 4]  # each launched once; 4 took 2's place


@pytest.mark.asyncio
async def test_warm_start_from_an_experiment_in_the_same_namespace(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """spec.warmStart names an earlier NASExperiment: its trials come from its state ConfigMap,
    are not run again and cost no budget."""
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            _resource(
                tmp_path,
                "first",
                budget={"maxTrials": 3, "parallelism": 3},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        first = await _wait_phase(cluster, "first", {"Succeeded", "Failed"})
        assert first["status"]["trials"]["completed"] == 3
        cluster.create_object(
            EXP,
            _resource(
                tmp_path,
                "second",
                budget={"maxTrials": 2, "parallelism": 2},
                optimizer={"method": "sobol", "seed": 1},
                warmStart=[{"experiment": "first"}],
            ),
        )
        second = await _wait_phase(cluster, "second", {"Succeeded", "Failed"})
    trials = second["status"]["trials"]
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert trials["warmStarted"] == 3 and trials["completed"] == 5 and trials["total"] == 5
    jobs = [
        j
        for j in cluster.list_objects(JOBS, "default")
        if j["metadata"]["labels"]["nasop.dev/experiment"] == "second"
    ]
    assert sorted(int(j["metadata"]["labels"]["nasop.dev/trial"]) for j in jobs) == [3, 4]
    events = [
        e["message"]
        for e in cluster.list_objects("v1/events", "default")
        if e.get("reason") == "WarmStarted"
    ]
    assert events == ["warm start: reused 3 trials"]
