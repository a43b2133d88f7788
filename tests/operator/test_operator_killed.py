"""The operator SIGKILLed again and again while trials log 20 epochs under early stopping.

Two searches run at once under one `nasop operator` process at a time, each a fork of a process
that imported nasop once (operator_zygote.py), killed with SIGKILL ten times at varied points:
- `kills-jobs`: lone trials as batch/v1 Jobs (the test plays their kubelet), stopped by a
  threshold rule that three of its ten Sobol curves fall under (finals 0.769, 0.784, 0.797;
  the rule looks from epoch 4 on, where a curve is at 97% of its final);
- `kills-pack`: one Volcano pack of three members, run one after another, each asked to stop
  through the experiment's stops ConfigMap once the first curve is complete.

Checked on the real API server's objects and the state the operator saved: every (trial, step)
is recorded once and equals what the pod printed, with no gap (nothing refused); each trial is
launched once and each stop applied once (the job of a stopped trial never replaced, its reason
saved once); a pack member asked to stop ends within `MEMBER_STOP_BOUND` seconds of the request
reaching its ConfigMap.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
from typing import Any

import kubelet
import pytest
import volcano
from operator_zygote import Zygote, kill
from scenario import (
    CONFIGMAPS,
    EXP,
    Poller,
    events,
    printed_points,
    recorded_points,
    resource,
    saved_experiment,
    wait_for,
    wait_phase,
)

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

KILLS = 10
#: seconds each operator runs after its first handler starts, before its SIGKILL
LIVES = [0.3, 1.6, 0.8, 2.4, 0.5, 1.2, 3.0, 0.9, 1.9, 0.6]
EPOCHS = 20
EPOCH_SECONDS = 0.4
TRIALS = 10  # of kills-jobs: with 2 at a time, it outlasts the ten kills
#: a stop request in the ConfigMap -> the member's `end: stopped` line: the played kubelet
#: projects the ConfigMap every 0.5 s, the member looks after each epoch (0.4 s); 2 s of margin
MEMBER_STOP_BOUND = 0.5 + EPOCH_SECONDS + 2.0


def _jobs_search(tmp_path: Any) -> dict[str, Any]:
    res = resource(
        tmp_path,
        "kills-jobs",
        budget={"maxTrials": TRIALS, "parallelism": 2},
        optimizer={"method": "sobol", "seed": 0},
        earlyStopping={"metric": "val_acc", "threshold": 0.8, "minProgression": 4},
    )
    res["spec"]["trial"]["scheduler"] = "job"
    res["spec"]["trial"]["args"] = ["--tensorboard=off", f"--sleep={EPOCH_SECONDS}"]
    res["spec"]["searchSpace"][-1] = {"name": "epochs", "type": "fixed", "value": EPOCHS}
    return res


def _pack_search(tmp_path: Any) -> dict[str, Any]:
    res = resource(
        tmp_path,
        "kills-pack",
        budget={"maxTrials": 3, "parallelism": 1},
        optimizer={"method": "sobol", "seed": 1},
        earlyStopping={
            "metric": "val_acc",
            "threshold": 0.999,
            "minProgression": 1,
            "minCurves": 1,
        },
    )
    res["spec"]["trial"]["pack"] = {"maxTrials": 3}
    res["spec"]["trial"]["args"] = ["--tensorboard=off", f"--sleep={EPOCH_SECONDS}"]
    res["spec"]["searchSpace"][-1] = {"name": "epochs", "type": "fixed", "value": EPOCHS}
    return res


class StopRequests(Poller):
    """When each key of the pack's stops ConfigMap first appeared, polled in a thread."""

    interval = 0.05

    def __init__(self, cluster: Any, name: str) -> None:
        super().__init__()
        self.cluster, self.name = cluster, name
        self.seen: dict[str, datetime.datetime] = {}

    def sample(self) -> None:
        cm = self.cluster.get_object(CONFIGMAPS, "default", f"{self.name}-nasop-stops")
        now = datetime.datetime.now(datetime.timezone.utc)
        for key in (cm or {}).get("data") or {}:
            self.seen.setdefault(key, now)


def _started(cluster: Any) -> int:
    """SearchStarted Events: one each time an operator opens a search from its saved state."""
    return len(events(cluster, "SearchStarted"))


async def _kill_repeatedly(cluster: Any, zygote: Zygote, tmp_path: Any) -> list[int]:
    """Fork an operator, let it open a search and run `life` seconds, SIGKILL it; ten times."""
    pids = []
    for k, life in enumerate(LIVES):
        before = _started(cluster)
        pid = zygote.fork(tmp_path / f"operator-{k}.log")
        pids.append(pid)
        await wait_for(lambda n=before: _started(cluster) > n, f"operator {k} opening a search", 60)
        await asyncio.sleep(life)
        kill(pid)
    return pids


def _creates(cluster: Any, group: str) -> int:
    return sum(
        1
        for c in cluster.operator_calls()
        if c.verb == "create" and c.group == group and c.resource == "jobs" and c.code == 201
    )


@pytest.mark.asyncio
async def test_ten_sigkills_under_early_stopping_record_each_step_and_apply_each_stop_once(
    cluster, kubeconfig, fast_ticks, tmp_path
):
    with (
        kubelet.KubeletPlayer(cluster, namespace="default") as pods,
        volcano.VolcanoPlayer(cluster, volcano.run_command(cluster=cluster)) as packs,
        StopRequests(cluster, "kills-pack") as requests,
        Zygote() as zygote,
    ):
        cluster.create_object(EXP, _jobs_search(tmp_path))
        cluster.create_object(EXP, _pack_search(tmp_path))
        pids = await _kill_repeatedly(cluster, zygote, tmp_path)
        zygote.fork(tmp_path / "operator-last.log")
        done = {
            name: await wait_phase(cluster, name, {"Succeeded", "Failed"}, timeout=180)
            for name in ("kills-jobs", "kills-pack")
        }
    assert len(set(pids)) == KILLS
    assert not pods.errors and not packs.errors
    for obj in done.values():
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert not events(cluster, "TrialOutputRefused")  # no gap anywhere, nothing refused
    assert not events(cluster, "TrialInterrupted")  # no trial lost to a kill
    assert _creates(cluster, "batch") == TRIALS  # each lone trial launched once
    assert _creates(cluster, "batch.volcano.sh") == 1  # the pack, once

    # kills-jobs: every (trial, step) once, equal to what its pod printed; each stop once
    experiment = saved_experiment(cluster, "kills-jobs")
    recorded = recorded_points(experiment)
    logs = {
        int(labels["nasop.dev/trial"]): cluster.proxy.pod_logs[key].text()
        for key, labels in pods.labels.items()
        if labels.get("nasop.dev/experiment") == "kills-jobs"
    }
    assert sorted(logs) == list(range(TRIALS)), sorted(logs)  # one pod per trial, none again
    stopped = {i for i, t in experiment.trials.items() if t.status.is_early_stopped}
    completed = {i for i, t in experiment.trials.items() if t.status.is_completed}
    assert stopped and completed, (stopped, completed)  # the rule stopped some, not all
    assert stopped | completed == set(range(TRIALS))
    trials = done["kills-jobs"]["status"]["trials"]
    assert (trials["completed"], trials["earlyStopped"]) == (len(completed), len(stopped))
    for i in range(TRIALS):
        rows = recorded[i]
        assert len(rows) == len({(m, s) for m, s, _ in rows}), (i, rows)  # each step once
        points = {(m, s): v for m, s, v in rows}
        printed = printed_points(logs[i])
        assert points == pytest.approx({k: printed[k] for k in points}), i
        steps = sorted(s for m, s in points if m == "val_acc")
        assert steps == list(range(len(steps))), (i, steps)  # no gap
        if i in completed:
            assert points == pytest.approx(printed), i  # all of it
            assert len(steps) == EPOCHS
    deleted = collections.Counter(
        c.name
        for c in cluster.operator_calls()
        if (c.verb, c.group, c.resource, c.code) == ("delete", "batch", "jobs", 200)
    )
    assert all(n == 1 for n in deleted.values()), deleted  # each stopped job deleted once
    assert {int(n.split("-t")[1].split("-")[0]) for n in deleted} == stopped, deleted
    told = [
        int(e["message"].split()[1]) for e in events(cluster, "TrialEarlyStopped", "kills-jobs")
    ]
    assert len(told) == len(set(told)) and set(told) <= stopped, told  # never stopped twice

    # kills-pack: each member ended once; a stopped member within the bound of its request
    pack = saved_experiment(cluster, "kills-pack")
    member_stopped = {i for i, t in pack.trials.items() if t.status.is_early_stopped}
    assert member_stopped, "no pack member was stopped"
    assert {k for k in requests.seen} == {f"stop-{i}" for i in member_stopped}
    lines = [
        (at, json.loads(line.split(" ", 1)[1]))
        for (ns, pod), log in cluster.proxy.pod_logs.items()
        if ns == "default" and pod.startswith("kills-pack")
        for at, line in log.stamped()
        if line.startswith("NASOP1 ") and '"end"' in line
    ]
    ends = {body["m"]: (at, body["end"]) for at, body in lines}
    assert len(ends) == len(lines), lines  # each member ended once
    late = {
        i: (ends[i][0] - requests.seen[f"stop-{i}"]).total_seconds()
        for i in member_stopped
        if i in ends  # the last one's pack may be cancelled before its next epoch
    }
    assert late, ends
    assert all(ends[i][1] == "stopped" for i in late), ends
    assert max(late.values()) <= MEMBER_STOP_BOUND, late
    print(f"stopped lone trials {sorted(stopped)}; pack members stopped {sorted(member_stopped)}, "
          f"seconds from request to end {late}")  # fmt: skip
    pack_recorded = recorded_points(pack)
    pack_log = "".join(
        log.text()
        for (ns, pod), log in cluster.proxy.pod_logs.items()
        if pod.startswith("kills-pack")
    )
    for i in range(3):
        rows = pack_recorded[i]
        assert len(rows) == len({(m, s) for m, s, _ in rows}), (i, rows)
        printed = printed_points(pack_log, member=i)
        points = {(m, s): v for m, s, v in rows}
        assert points == pytest.approx({k: printed[k] for k in points}), i
        steps = sorted(s for m, s in points if m == "val_acc")
        assert steps == list(range(len(steps))), (i, steps)
