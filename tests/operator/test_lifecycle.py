"""Operator scenarios around an experiment's life: suspend/resume, delete (operator up or down),
no finalizer, API-server faults, and two replicas under kopf peering.

The real operator runs against the real API server; `volcano.Gate` holds the trial jobs Running
until the test lets them finish, so "while trials run" is a state, not a race.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse

import pytest
import volcano
from scenario import (
    CONFIGMAPS,
    EXP,
    HANDLERS,
    JOBS,
    RBAC_BOTH,
    ConditionTrail,
    assert_kstatus,
    events,
    job_phase,
    jobs_of,
    resource,
    trial_indexes,
    wait_for,
    wait_phase,
)

from nasop.controller.watches import SELECTOR
from nasop.trials.volcano import REASON_SECONDS

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]
FINALIZER = "nasop.dev/finalizer"
SELECTED = urllib.parse.urlencode({"labelSelector": SELECTOR})  # the trial watches' query


def _running_jobs(cluster, name, n):
    jobs = jobs_of(cluster, name)
    return jobs if sum(job_phase(j) == "Running" for j in jobs) >= n else None


def _state_configmap(cluster, name):
    return cluster.get_object(CONFIGMAPS, "default", f"{name}-nasop-state")


def _collected(cluster, name):
    """Nothing of the experiment is left: the garbage collector removed its jobs and state."""
    return not jobs_of(cluster, name) and _state_configmap(cluster, name) is None


GC_SECONDS = 30  # kube-controller-manager's garbage collector works within seconds


@pytest.mark.asyncio
async def test_suspend_keeps_running_trials_and_resume_finishes_the_search(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """suspend=true: no new launches; running trials run to their end and count; resume goes on."""
    gate = volcano.Gate()
    async with ConditionTrail(cluster, "pause") as trail:
        with volcano.VolcanoPlayer(cluster, gate) as player:
            await run_operator(modules=HANDLERS, watching=[EXP])
            cluster.create_object(
                EXP,
                resource(
                    tmp_path,
                    "pause",
                    budget={"maxTrials": 4, "parallelism": 2},
                    optimizer={"method": "sobol", "seed": 0},
                ),
            )
            await wait_for(lambda: _running_jobs(cluster, "pause", 2), "2 running trials")
            cluster.patch_object(EXP, "default", "pause", {"spec": {"suspend": True}})
            obj = await wait_phase(cluster, "pause", {"Suspended"}, timeout=30)
            trail.record()  # suspended, its two trials still running
            assert "suspend" in obj["status"]["message"]
            launched = trial_indexes(cluster, "pause")
            assert launched == [0, 1]
            gate.open()  # the trials that were running when suspended finish normally
            obj = await wait_for(
                lambda: (
                    (o := cluster.get_object(EXP, "default", "pause"))
                    and o["status"]["trials"]["completed"] == 2
                    and o
                ),
                "2 completed",
            )
            assert obj["status"]["phase"] == "Suspended" and obj["status"]["trials"]["running"] == 0
            assert [
                player.results[("default", j["metadata"]["name"])]
                for j in jobs_of(cluster, "pause")
            ] == ["Completed", "Completed"]
            await asyncio.sleep(1.0)  # ten ticks while suspended: still nothing launched
            assert trial_indexes(cluster, "pause") == launched
            cluster.patch_object(EXP, "default", "pause", {"spec": {"suspend": False}})
            obj = await wait_phase(cluster, "pause", {"Succeeded"})
    assert obj["status"]["trials"]["completed"] == 4
    # Reconciling while suspended trials still run; not once they ended; again on resume
    assert trail.of("Reconciling") == [
        ("True", "Running"),
        ("True", "Suspended"),
        ("False", "Suspended"),
        ("True", "Running"),
        ("False", "Succeeded"),
    ]
    assert trail.of("Ready") == [
        ("False", "Running"),
        ("False", "Suspended"),
        ("False", "Running"),
        ("True", "Succeeded"),
    ]
    assert {s for s, _ in trail.of("Stalled")} == {"False"}
    assert_kstatus(obj)
    assert obj["metadata"]["generation"] == 3  # suspend, resume: both observed
    assert trial_indexes(cluster, "pause") == [0, 1, 2, 3]  # each index run once


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_delete_mid_search_cancels_running_jobs(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """The operator itself cancels the running jobs; the ConfigMap goes with its owner.

    Another finalizer (`example.com/hold`, as a GitOps tool or foreground deletion would add)
    keeps the deleted object Terminating, so garbage collection cannot have removed the jobs:
    what disappears, the operator removed.
    """
    with volcano.VolcanoPlayer(cluster, volcano.Gate()) as player:
        await run_operator(modules=HANDLERS, watching=[EXP])
        res = resource(
            tmp_path,
            "doomed",
            budget={"maxTrials": 6, "parallelism": 2},
            optimizer={"method": "sobol", "seed": 0},
        )
        res["metadata"]["finalizers"] = ["example.com/hold"]
        cluster.create_object(EXP, res)
        running = await wait_for(lambda: _running_jobs(cluster, "doomed", 2), "2 running trials")
        assert _state_configmap(cluster, "doomed") is not None
        cluster.delete_object(EXP, "default", "doomed")
        await wait_for(lambda: not jobs_of(cluster, "doomed"), "the jobs cancelled", 30)
        assert cluster.get_object(EXP, "default", "doomed")["metadata"]["deletionTimestamp"]
        ev = await wait_for(lambda: events(cluster, "SearchDeleted", "doomed"), "SearchDeleted")
        assert "2 running trial jobs cancelled" in ev[0]["message"]
        for job in running:
            assert player.wait_for("default", job["metadata"]["name"]) in ("Aborted", "Deleted")
        deletes = [
            c for c in cluster.operator_calls() if c.verb == "delete" and c.resource == "jobs"
        ]
        assert sorted(r.name for r in deletes) == sorted(j["metadata"]["name"] for j in running)
        # the hold goes: the object and, by ownerReference, its state ConfigMap go too
        cluster.patch_object(EXP, "default", "doomed", {"metadata": {"finalizers": None}})
        assert cluster.get_object(EXP, "default", "doomed") is None
        await wait_for(
            lambda: _state_configmap(cluster, "doomed") is None,
            "the state ConfigMap garbage-collected",
            GC_SECONDS,
        )
        await asyncio.sleep(0.5)  # five ticks: the stopped driver recreates nothing
        assert not jobs_of(cluster, "doomed") and _state_configmap(cluster, "doomed") is None


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_no_finalizer_so_delete_works_with_the_operator_up_or_down(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """nasop adds no finalizer (and removes one under its name): a delete never hangs.

    Jobs and ConfigMap then go by ownerReference: kube-controller-manager's garbage collector.
    """
    with volcano.VolcanoPlayer(cluster, volcano.Gate()):
        marked = resource(
            tmp_path,
            "marked",
            budget={"maxTrials": 1, "parallelism": 1},
            optimizer={"method": "sobol", "seed": 0},
        )
        marked["metadata"]["finalizers"] = [FINALIZER]  # nasop's finalizer, as if added by hand
        cluster.create_object(EXP, marked)
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            resource(
                tmp_path,
                "live",
                budget={"maxTrials": 4, "parallelism": 2},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        await wait_for(lambda: _running_jobs(cluster, "live", 2), "2 running trials")
        await wait_for(
            lambda: not cluster.get_object(EXP, "default", "marked")["metadata"].get("finalizers"),
            "the nasop finalizer removed",
        )
        assert not cluster.get_object(EXP, "default", "live")["metadata"].get("finalizers")

        # deleted while the operator runs: gone at once, and the driver stops
        cluster.delete_object(EXP, "default", "marked")
        assert cluster.get_object(EXP, "default", "marked") is None
        await wait_for(lambda: events(cluster, "SearchDeleted", "marked"), "SearchDeleted")
        await wait_for(lambda: _collected(cluster, "marked"), "marked collected", GC_SECONDS)

        # deleted while the operator is down: nothing blocks the deletion
        await handle.cancel()
        cluster.delete_object(EXP, "default", "live")
        assert cluster.get_object(EXP, "default", "live") is None
        await wait_for(lambda: _collected(cluster, "live"), "live collected", GC_SECONDS)

    # restarted, the operator serves a new experiment and recreates nothing of the deleted ones
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            resource(
                tmp_path,
                "canary",
                budget={"maxTrials": 1, "parallelism": 1},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        await wait_phase(cluster, "canary", {"Succeeded"})
    for name in ("marked", "live"):
        assert _collected(cluster, name)


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_api_server_faults_and_dropped_watches_are_survived(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    """409 and 500 on state writes, 500 on a job launch and a status patch, slow answers (3 s on
    a state write and on the first list of the trial jobs' watch), a failed list of the trial
    pods, a watch cut with 410 Gone and a 500 on re-watch: the search still ends Succeeded, no
    trial index launched twice.

    It also makes, on purpose, the calls that only trouble makes (run in both RBAC scopes, so
    test_rbac sees them under the ClusterRole too): a job read while its watch is still listing
    (GET job), the experiment read after a failed status write (GET nasexperiment), and the
    PodGroup of a job that waited 5 s (GET podgroup)."""
    cm_path = "/api/v1/namespaces/default/configmaps/pit-nasop-state"
    faults = [
        cluster.proxy.inject("PUT", cm_path, 409),  # a stale write: reload the state
        cluster.proxy.inject("PUT", cm_path, 500),  # the API server failed a write: reload
        cluster.proxy.inject("POST", "/namespaces/default/jobs", 500),  # a launch failed: retried
        cluster.proxy.inject("PATCH", "/nasexperiments/pit/status", 500),  # rewritten next tick
        cluster.proxy.delay("PUT", cm_path, 3.0, times=2),  # a slow API server
        cluster.proxy.inject("GET", f"/pods?{SELECTED}&limit", 500),  # the pods: listed again
    ]
    admitted = threading.Event()  # the queue holds the jobs until set
    with volcano.VolcanoPlayer(cluster, volcano.run_command(), admitted=admitted):
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(
            EXP,
            resource(
                tmp_path,
                "pit",
                budget={"maxTrials": 6, "parallelism": 2},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        await wait_for(lambda: len(jobs_of(cluster, "pit")) >= 2, "two launches")
        # the first two jobs wait 6 s for their queue: their reason is asked (their PodGroup)
        threading.Timer(REASON_SECONDS + 1.0, admitted.set).start()
        # the jobs' watch ends; resuming it fails; the list after that takes 3 s: meanwhile
        # ticks read their jobs from the API server
        faults.append(cluster.proxy.inject("GET", f"/jobs?{SELECTED}&watch=true", 500))
        faults.append(cluster.proxy.delay("GET", f"/jobs?{SELECTED}&limit", 3.0))
        assert cluster.proxy.drop_watches(JOBS) >= 1
        watch_fault = cluster.proxy.inject("GET", "nasexperiments?", 500)
        # the open watch ends with the 410 Gone an API server sends for a compacted version
        assert cluster.proxy.drop_watches(EXP, gone=True) >= 1
        await handle.wait_watching(EXP, timeout=30)
        # the spec change travels over the re-established watch
        cluster.patch_object(EXP, "default", "pit", {"spec": {"budget": {"maxTrials": 7}}})
        obj = await wait_phase(cluster, "pit", {"Succeeded", "Failed"})
    st = obj["status"]
    assert st["phase"] == "Succeeded", st
    assert st["trials"]["completed"] == 7 and st["observedGeneration"] == 2
    for fault in [*faults, watch_fault]:
        assert fault.hits == fault.times, fault
    indexes = trial_indexes(cluster, "pit")
    assert len(indexes) == len(set(indexes)) == 7, indexes  # each trial launched once
    watches = [
        c
        for c in cluster.proxy.calls
        if c.method == "GET" and "watch=" in c.path and "/nasexperiments?" in c.path
    ]
    assert {500, 200} <= {c.status for c in watches}, [(c.path, c.status) for c in watches]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replica(name, priority, log_dir):
    """`nasop operator` in its own process, as one replica of a Deployment would run it.

    (Two kopf operators cannot share one event loop: stopping one cancels every task of the loop.)
    """
    env = {
        **os.environ,
        "NASOP_PEERING": "nasop",
        "NASOP_PEERING_PRIORITY": str(priority),
        "POD_ID": name,
    }  # POD_ID: kopf's peer identity
    log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    cmd = [
        sys.executable,
        "-c",
        "import sys; from nasop.cli import main; sys.exit(main())",
        "operator",
        "--namespace",
        "default",
        f"--liveness-port={_free_port()}",
        f"--metrics-port={_free_port()}",
    ]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _peers(cluster):
    return set(
        (cluster.get_object("kopf.dev/v1/kopfpeerings", "default", "nasop") or {}).get("status")
        or {}
    )


@pytest.mark.asyncio
@pytest.mark.rbac_scopes(*RBAC_BOTH)
async def test_two_replicas_under_kopf_peering_drive_each_experiment_once(
    cluster, kubeconfig, fast_ticks, tmp_path
):
    """Two `nasop operator` processes with NASOP_PEERING: replica a (priority 200) drives, b (100)
    stays paused; when a stops (SIGTERM, as in a rolling update) b takes over from the state."""
    cluster.create_object(
        "kopf.dev/v1/kopfpeerings", {"metadata": {"name": "nasop", "namespace": "default"}}
    )
    gate = volcano.Gate()
    procs = []
    try:
        with volcano.VolcanoPlayer(cluster, gate):
            procs.append(_replica("replica-a", 200, tmp_path))
            await wait_for(lambda: "replica-a" in _peers(cluster), "replica a up", 90)
            procs.append(_replica("replica-b", 100, tmp_path))
            await wait_for(lambda: "replica-b" in _peers(cluster), "replica b up", 90)
            cluster.create_object(
                EXP,
                resource(
                    tmp_path,
                    "duo",
                    budget={"maxTrials": 4, "parallelism": 2},
                    optimizer={"method": "sobol", "seed": 0},
                ),
            )
            await wait_for(lambda: _running_jobs(cluster, "duo", 2), "2 running trials")
            await asyncio.sleep(0.5)  # five ticks of both replicas with the trials running
            assert len(events(cluster, "SearchStarted", "duo")) == 1  # one driver, not two
            assert trial_indexes(cluster, "duo") == [0, 1]

            procs[0][0].send_signal(signal.SIGTERM)  # a leaves the peering as it exits
            await wait_for(lambda: procs[0][0].poll() is not None, "replica a exited", 60)
            await wait_for(
                lambda: len(events(cluster, "SearchStarted", "duo")) == 2,
                "replica b taking over",
                60,
            )
            gate.open()
            obj = await wait_phase(cluster, "duo", {"Succeeded", "Failed"})
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert obj["status"]["trials"]["completed"] == 4
    assert trial_indexes(cluster, "duo") == [0, 1, 2, 3]  # adopted, not relaunched
    launched = {
        name: sorted(
            int(i)
            for i in re.findall(r"trial (\d+) launched", (tmp_path / f"{name}.log").read_text())
        )
        for name in ("replica-a", "replica-b")
    }
    assert launched == {"replica-a": [0, 1], "replica-b": [2, 3]}, launched
