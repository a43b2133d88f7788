"""Three operator replicas share the experiments by shard leases while replicas are killed.

Each replica is a whole `nasop operator` process (forked from one that imported nasop once,
operator_zygote.py) with NASOP_SHARDS set: it drives only the experiments of the shards whose
coordination.k8s.io Lease it holds (nasop/controller/shards.py). Replicas are SIGKILLed at
random points and replaced, so that shards pass from replica to replica mid-search. Checked on
the real API server: the shards were split across the replicas, every experiment reaches
Succeeded, and each trial's job was created exactly once (the audit log's creates).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import random
import threading
import time
from typing import Any

import pytest
import volcano
from operator_zygote import Zygote, kill
from scenario import EXP, RBAC_BOTH, Poller, events, resource, wait_for, wait_phase

from nasop import results

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes(*RBAC_BOTH),  # the only scenario that takes Leases
]

LEASES = "coordination.k8s.io/v1/leases"
SHARDS = 6
LEASE_SECONDS = 3
REPLICAS = 3
EXPERIMENTS = 6
TRIALS = 4  # per experiment, two at a time
TRIAL_SECONDS = 0.8
KILL_EVERY = (1.0, 3.0)  # seconds between kills, drawn at random
KILLS = 6
#: the longest a shard may go unrenewed: with kills this close together the replicas alive may
#: all have started after its holder's last renewal; such a replica takes a lease two durations
#: after its renewTime (controller/shards.py: lapse by observation, client-go's rule, or by a
#: renewTime two durations old), then one renewal period (a third of it) until it looks again,
#: and 2 s for a loaded machine
ORPHANED_AT_MOST = 2 * LEASE_SECONDS + LEASE_SECONDS / 3 + 2.0


def _trial(job: dict[str, Any], cancelled: threading.Event) -> volcano.JobOutcome:
    """A trial that takes TRIAL_SECONDS and prints the contract's lines (no trainer process)."""
    task = job["spec"]["tasks"][0]
    env = {e["name"]: e.get("value", "") for e in task["template"]["spec"]["containers"][0]["env"]}
    p = json.loads(env.get("NASOP_PARAMS") or "{}")
    if cancelled.wait(TRIAL_SECONDS):
        return volcano.JobOutcome("Aborted")
    acc = 0.5 + 0.4 * float(p.get("learning_rate", 0.01)) / 0.1
    points = [(0, {"num_params": float(p.get("hidden_size_1", 32))})]
    points += [(e, {"val_acc": acc * (1 - 0.5 ** (e + 1))}) for e in range(2)]
    text = "".join(results.format_point(s, st, v) + "\n" for s, (st, v) in enumerate(points))
    return volcano.JobOutcome("Completed", exit_codes={task["name"]: 0}, logs={task["name"]: text})


def _holders(cluster: Any) -> dict[str, str]:
    """shard lease -> holder, of the unexpired shard leases."""
    out = {}
    for lease in cluster.list_objects(LEASES, "default", "nasop.dev/lease=shard"):
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity"):
            out[lease["metadata"]["name"]] = spec["holderIdentity"]
    return out


class Renewals(Poller):
    """Each shard lease's renewTimes as seen by polling (every 0.1 s, in a thread)."""

    def __init__(self, cluster: Any) -> None:
        super().__init__()
        self.cluster = cluster
        self.seen: dict[str, set[datetime.datetime]] = collections.defaultdict(set)

    def sample(self) -> None:
        for lease in self.cluster.list_objects(LEASES, "default", "nasop.dev/lease=shard"):
            renew = (lease.get("spec") or {}).get("renewTime")
            if renew:
                at = datetime.datetime.fromisoformat(renew.replace("Z", "+00:00"))
                self.seen[lease["metadata"]["name"]].add(at)

    def longest_gap(self) -> float:
        """The longest time any shard went without a renewal (by whichever replica)."""
        gaps = [
            (b - a).total_seconds()
            for times in self.seen.values()
            for a, b in zip(sorted(times), sorted(times)[1:])
        ]
        return max(gaps, default=float("inf"))


def _creates(cluster: Any) -> collections.Counter[str]:
    """Volcano jobs created (201), by name."""
    return collections.Counter(
        c.name
        for c in cluster.operator_calls()
        if (c.verb, c.group, c.resource, c.code) == ("create", "batch.volcano.sh", "jobs", 201)
    )


@pytest.mark.asyncio
async def test_three_replicas_share_the_experiments_and_survive_random_kills(
    cluster, kubeconfig, fast_ticks, tmp_path, monkeypatch
):
    monkeypatch.setenv("NASOP_SHARDS", str(SHARDS))
    monkeypatch.setenv("NASOP_LEASE_SECONDS", str(LEASE_SECONDS))
    monkeypatch.delenv("NASOP_PEERING", raising=False)
    rng = random.Random(24)
    names = [f"shard-exp-{i}" for i in range(EXPERIMENTS)]
    with (
        volcano.VolcanoPlayer(cluster, _trial, namespace="default", poll_interval=0.05) as player,
        Zygote() as zygote,
        Renewals(cluster) as renewals,
    ):
        alive = [zygote.fork(tmp_path / f"replica-{k}.log") for k in range(REPLICAS)]
        split = await wait_for(
            lambda: (
                len(set(_holders(cluster).values())) == REPLICAS
                and len(_holders(cluster)) == SHARDS
            ),
            "the shards split across three replicas",
            30,
        )
        assert split
        for name in names:
            budget = {"maxTrials": TRIALS, "parallelism": 2, "maxFailedTrials": 0}
            cluster.create_object(
                EXP, resource(tmp_path, name, budget=budget, optimizer={"method": "sobol"})
            )
        started = time.monotonic()
        for k in range(KILLS):
            await asyncio.sleep(rng.uniform(*KILL_EVERY))
            victim = alive.pop(rng.randrange(len(alive)))
            kill(victim)
            alive.append(zygote.fork(tmp_path / f"replica-{REPLICAS + k}.log"))
        done = {n: await wait_phase(cluster, n, {"Succeeded", "Failed"}, 90) for n in names}
        took = time.monotonic() - started
    assert not player.errors
    for name, obj in done.items():
        assert obj["status"]["phase"] == "Succeeded", (name, obj["status"])
        assert obj["status"]["trials"]["completed"] == TRIALS, (name, obj["status"]["trials"])
    created = _creates(cluster)
    for name in names:  # each trial launched once: one create per trial, none again
        mine = {n: c for n, c in created.items() if n.startswith(f"{name}-")}
        assert len(mine) == TRIALS and set(mine.values()) == {1}, (name, mine)
    assert not events(cluster, "TrialInterrupted")  # no trial given up for a kill
    # none orphaned for longer than a lease (and the round that notices it lapsed)
    assert len(renewals.seen) == SHARDS
    assert renewals.longest_gap() <= ORPHANED_AT_MOST, renewals.longest_gap()
    print(
        f"{EXPERIMENTS} experiments x {TRIALS} trials, {KILLS} kills: all Succeeded in "
        f"{took:.1f}s; longest a shard went unrenewed: {renewals.longest_gap():.1f}s"
    )
