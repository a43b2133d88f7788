"""Shard leases as plain functions (no API server): which shard an experiment is in, and what
one replica's round renews, claims and releases. The leases on the real server:
tests/operator/test_shards.py."""

from __future__ import annotations

import collections
import datetime

from nasop.controller import shards
from nasop.controller.shards import Held, plan, replica_lease, shard_lease

NOW = datetime.datetime(2026, 12, 7, 8, 0, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(seconds=10)
EARLIER = NOW - datetime.timedelta(seconds=1)


def _lease(name: str, holder: str | None, expires: datetime.datetime = LATER) -> Held:
    return Held(name, holder, expires, "1")


def _leases(*held: Held) -> dict[str, Held]:
    return {h.name: h for h in held}


def test_shard_of_is_stable_and_spreads_experiments():
    assert shards.shard_of("default", "exp-1", 8) == 0
    assert shards.shard_of("other", "exp-1", 8) == 3  # the namespace counts
    counts = collections.Counter(shards.shard_of("ns", f"exp-{i}", 8) for i in range(800))
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 2 * min(counts.values()), counts  # roughly even
    # a fixed value: the hash must not change between releases (replicas of two versions)
    assert shards.shard_of("default", "exp-1", 1000) == 128


def test_a_lone_replica_claims_every_free_shard():
    todo = plan({}, "a", 4, NOW)
    assert (todo.renew, todo.claim, todo.release, todo.replicas) == ([], [0, 1, 2, 3], [], 1)


def test_a_new_replica_makes_the_holder_release_down_to_its_fair_share():
    held = [_lease(shard_lease(i), "a") for i in range(4)]
    alive = [_lease(replica_lease("a"), "a"), _lease(replica_lease("b"), "b")]
    todo = plan(_leases(*held, *alive), "a", 4, NOW)
    assert (todo.renew, todo.claim, todo.release, todo.replicas) == ([0, 1], [], [2, 3], 2)
    # b sees no free shard until a releases, then claims them
    assert plan(_leases(*held, *alive), "b", 4, NOW).claim == []
    released = [_lease(shard_lease(i), None) for i in (2, 3)]
    assert plan(_leases(*held[:2], *released, *alive), "b", 4, NOW).claim == [2, 3]


def test_expired_leases_are_free_and_dead_replicas_do_not_count():
    held = [_lease(shard_lease(0), "a"), _lease(shard_lease(1), "dead", EARLIER)]
    alive = [_lease(replica_lease("a"), "a"), _lease(replica_lease("dead"), "dead", EARLIER)]
    todo = plan(_leases(*held, *alive), "b", 3, NOW)
    assert todo.replicas == 2  # a and b: the dead replica's lease lapsed
    assert todo.claim == [1, 2]  # the dead replica's shard and the unclaimed one
    assert plan(_leases(*held, *alive), "a", 3, NOW).renew == [0]


def test_keeper_holds_a_shard_only_until_its_local_deadline():
    keeper = shards.Keeper(api=None, namespace="ns", holder="a", count=4, seconds=3)
    now = [100.0]
    keeper.clock = lambda: now[0]
    i = shards.shard_of("ns", "exp", 4)
    keeper._until[i] = 102.0  # renewed at 100 with a 3 s lease: held until 100 + 3 - 1
    assert keeper.holds("ns", "exp") and keeper.held() == [i]
    now[0] = 102.0
    assert not keeper.holds("ns", "exp")  # a second before any other replica may take it


def test_a_lease_lapses_by_what_this_replica_saw_not_by_the_holders_clock():
    """client-go's rule: a lease renewed by a host whose clock is behind carries a renewTime
    already past its duration, yet while its resourceVersion keeps changing it is held; it
    lapses after one whole duration (here 3 s) of this replica's own clock without a new
    version, or once its renewTime is two durations old (a holder long dead, clocks agreeing
    within one duration)."""
    now = [0.0]
    seen = shards.Observed(3, lambda: now[0])

    def lapsed(h: Held) -> bool:
        return seen.lapsed(h, NOW)  # this node's wall clock: NOW

    # renewed just now by a holder whose clock is 5.5 s behind: its renewTime + 3 s is 2.5 s
    # before NOW (free by the wall clock alone), but not yet two durations old
    skewed = NOW - datetime.timedelta(seconds=2.5)
    for step, version in enumerate(["1", "2", "3"]):
        now[0] = float(step)
        lease = Held(shard_lease(0), "a", skewed, version)
        seen.see({lease.name: lease})
        assert lease.free(NOW)  # the wall-clock test would take it
        assert not lapsed(lease)
        assert plan({lease.name: lease}, "b", 1, NOW, lapsed).claim == []
    now[0] = 2.0 + 2.9
    assert not lapsed(lease)
    now[0] = 2.0 + 3.0  # no renewal seen for a whole duration: now it may be taken
    assert lapsed(lease)
    assert plan({lease.name: lease}, "b", 1, NOW, lapsed).claim == [0]
    # a released lease is free at once; a lease never seen before counts as just renewed
    assert lapsed(Held(shard_lease(1), None, None, "9"))
    assert not lapsed(Held(shard_lease(2), "c", skewed, "1"))
    # its own shard stays this replica's to renew, whatever the clocks say
    mine = Held(shard_lease(0), "b", skewed, "3")
    assert plan({mine.name: mine}, "b", 1, NOW, lapsed).renew == [0]


def test_a_fresh_replica_takes_a_dead_holders_lease_two_durations_after_its_renewal():
    now = [0.0]
    seen = shards.Observed(3, lambda: now[0])
    dead = Held(shard_lease(0), "a", NOW + datetime.timedelta(seconds=3), "7")  # renewed at NOW
    seen.see({dead.name: dead})  # just started: this version is news
    assert not seen.lapsed(dead, NOW + datetime.timedelta(seconds=5.9))
    assert seen.lapsed(dead, NOW + datetime.timedelta(seconds=6))
