"""Experiments split across operator replicas by shard leases.

Each experiment belongs to one of `count` shards, a stable hash of its namespace/name
(:func:`shard_of`). Each shard is a coordination.k8s.io Lease ``nasop-shard-<i>`` in the
operator's namespace, and a replica drives only the experiments of the shards whose lease it
holds. Every replica also keeps a Lease of its own (``nasop-replica-<holder>``) while it lives,
so that the others know how many share the shards: each holds at most its fair share,
ceil(count / live replicas), and gives up the rest (a replica that starts takes its share as
the others release theirs).

Safety, as client-go's leader election: a lease is taken over only once it has gone unrenewed
for its whole duration, and every write names the resourceVersion it read, so of two replicas
racing for a shard one gets a conflict. "Unrenewed" is judged as client-go judges it, on this
replica's own monotonic clock: since this replica first saw the lease's current
resourceVersion (:class:`Observed`). A replica that has just started has seen nothing yet; it
also takes a lease whose renewTime is a whole duration older than the lease itself allows
(renewTime + 2 x duration, by its wall clock), so a shard whose holder died is not left
waiting for a fresh replica's observation. Two replicas can then drive one experiment only if
their nodes' clocks disagree by more than one lease duration. The holder
counts a shard as its own only until ``duration - margin`` after the start of its last
successful renewal: it stops driving the shard's experiments (``Keeper.holds`` turns False) before
any other replica may take the lease. A killed replica's shards are taken over after at most one
lease duration plus two renewal periods (one to see its last renewal, one to claim) by a replica
that saw it renewed, two durations plus a period by one that started after.

Plain functions over a kubernetes ApiClient; :class:`Keeper` runs them in a thread.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KIND_LABEL = "nasop.dev/lease"  # "shard" or "replica"
SHARD_PREFIX = "nasop-shard-"
REPLICA_PREFIX = "nasop-replica-"


def shard_of(namespace: str, name: str, count: int) -> int:
    """The shard of an experiment: stable across processes and Python versions (not hash())."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def holder_identity() -> str:
    """This replica's name in the leases: the pod's (POD_NAME), else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def shard_lease(i: int) -> str:
    return f"{SHARD_PREFIX}{i}"


def replica_lease(holder: str) -> str:
    return f"{REPLICA_PREFIX}{holder}"[:253]


def fair_share(count: int, replicas: int) -> int:
    return math.ceil(count / max(1, replicas))


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Held:
    """A lease as read: who holds it, until when (UTC), at which resourceVersion."""

    name: str
    holder: str | None
    expires: datetime.datetime | None
    version: str | None

    def free(self, now: datetime.datetime) -> bool:
        return not self.holder or self.expires is None or self.expires <= now


def _held(obj: Any) -> Held:
    spec = obj.spec
    renew = spec.renew_time or spec.acquire_time if spec is not None else None
    holder = spec.holder_identity if spec is not None else None
    expires = None
    if renew is not None and spec.lease_duration_seconds:
        if renew.tzinfo is None:
            renew = renew.replace(tzinfo=datetime.timezone.utc)
        expires = renew + datetime.timedelta(seconds=spec.lease_duration_seconds)
    return Held(obj.metadata.name, holder, expires, obj.metadata.resource_version)


def read_all(api: Any, namespace: str) -> dict[str, Held]:
    """Every nasop lease in `namespace` (shards and replicas), by name: one list call."""
    from kubernetes import client

    leases = client.CoordinationV1Api(api).list_namespaced_lease(
        namespace, label_selector=KIND_LABEL
    )
    return {o.metadata.name: _held(o) for o in leases.items}


def write(
    api: Any,
    namespace: str,
    name: str,
    kind: str,
    holder: str | None,
    seconds: int,
    now: datetime.datetime,
    version: str | None,
    exists: bool,
) -> bool:
    """Create or replace the lease as held by `holder` (None: released) from `now`; False when
    another writer got there first (a conflict: the caller reads again next round)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "labels": {KIND_LABEL: kind, "app.kubernetes.io/managed-by": "nasop"},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "renewTime": _rfc3339(now),
        },
    }
    coord = client.CoordinationV1Api(api)
    try:
        if exists:
            body["metadata"]["resourceVersion"] = version
            coord.replace_namespaced_lease(name, namespace, body)
        else:
            coord.create_namespaced_lease(namespace, body)
    except ApiException as e:
        if e.status in (404, 409):
            return False
        raise
    return True


@dataclass
class Plan:
    """What one round does: the shards to renew, claim and release."""

    renew: list[int]
    claim: list[int]
    release: list[int]
    replicas: int


def plan(
    leases: dict[str, Held],
    holder: str,
    count: int,
    now: datetime.datetime,
    lapsed: Callable[[Held], bool] | None = None,
) -> Plan:
    """This replica's round: keep up to its fair share of the shards it holds, claim free ones
    up to that share, release the rest. Replicas alive: unexpired replica leases, itself too.
    `lapsed` says whether a lease held by another replica may be taken (default: its renewTime
    plus its duration is past `now`; the Keeper passes its own observation, `Observed.lapsed`)."""
    free_now = lapsed or (lambda h: h.free(now))
    alive = {
        h.holder
        for n, h in leases.items()
        if n.startswith(REPLICA_PREFIX) and not h.free(now) and h.holder
    } | {holder}
    share = fair_share(count, len(alive))

    def held_by(i: int) -> str | None:
        h = leases.get(shard_lease(i))
        if h is None or not h.holder:
            return None
        return h.holder if h.holder == holder or not free_now(h) else None

    mine = [i for i in range(count) if held_by(i) == holder]
    free = [i for i in range(count) if held_by(i) is None]
    keep = mine[:share]
    return Plan(
        renew=keep,
        claim=free[: max(0, share - len(keep))],
        release=mine[share:],
        replicas=len(alive),
    )


class Observed:
    """When this replica first saw each lease's current resourceVersion, on its monotonic clock
    (client-go's observedTime): a lease another replica holds lapses `seconds` after that, if
    no renewal (a new version) has been seen since. A replica that starts sees every held lease
    as just renewed, so it waits one whole duration before taking any."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock = seconds, clock
        self._seen: dict[str, tuple[str | None, float]] = {}

    def see(self, leases: dict[str, Held]) -> None:
        now = self.clock()
        for name, h in leases.items():
            if name not in self._seen or self._seen[name][0] != h.version:
                self._seen[name] = (h.version, now)

    def lapsed(self, h: Held, now: datetime.datetime) -> bool:
        """Released, unrenewed for a duration as seen here, or a whole duration past its
        expiry by `now` (this node's wall clock: a fresh replica's way to a dead holder's)."""
        if not h.holder:
            return True
        if h.expires is not None and h.expires + datetime.timedelta(seconds=self.seconds) <= now:
            return True
        version, since = self._seen.get(h.name, (h.version, self.clock()))
        return version == h.version and self.clock() - since >= self.seconds


class Keeper:
    """Holds this replica's shard leases in a thread; `holds(namespace, name)` answers at once.

    `clock` is monotonic seconds (the local deadline of each shard), `wall` the UTC time written
    into the leases.
    """

    def __init__(
        self,
        api: Any,
        namespace: str,
        holder: str,
        count: int,
        seconds: int = 15,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
            datetime.timezone.utc
        ),
    ) -> None:
        if count < 1:
            raise ValueError("NASOP_SHARDS must be >= 1")
        if seconds < 3:
            raise ValueError("NASOP_LEASE_SECONDS must be >= 3")
        self.api, self.namespace, self.holder = api, namespace, holder
        self.count, self.seconds = count, seconds
        self.clock, self.wall = clock, wall
        self.period = seconds / 3  # renewals per lease duration: two may fail before it lapses
        self.margin = seconds / 3  # the holder stops this long before others may take over
        self._until: dict[int, float] = {}  # shard -> local monotonic deadline
        self._observed = Observed(seconds, lambda: self.clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holds(self, namespace: str, name: str) -> bool:
        return self._until.get(shard_of(namespace, name, self.count), 0.0) > self.clock()

    def held(self) -> list[int]:
        now = self.clock()
        return sorted(i for i, t in self._until.items() if t > now)

    def step(self) -> Plan:
        """One round: renew this replica's own lease, then renew, claim and release shards."""
        started, now = self.clock(), self.wall()
        leases = read_all(self.api, self.namespace)
        self._observed.see(leases)
        me = leases.get(replica_lease(self.holder))
        write(
            self.api,
            self.namespace,
            replica_lease(self.holder),
            "replica",
            self.holder,
            self.seconds,
            now,
            me.version if me else None,
            me is not None,
        )
        todo = plan(leases, self.holder, self.count, now, lambda h: self._observed.lapsed(h, now))
        for i in todo.release:
            self._until.pop(i, None)  # stop driving before the lease is let go
            gone = leases[shard_lease(i)]
            write(
                self.api,
                self.namespace,
                gone.name,
                "shard",
                None,
                self.seconds,
                now,
                gone.version,
                True,
            )
        for i in todo.renew + todo.claim:
            h = leases.get(shard_lease(i))
            ok = write(
                self.api,
                self.namespace,
                shard_lease(i),
                "shard",
                self.holder,
                self.seconds,
                now,
                h.version if h else None,
                h is not None,
            )
            if ok:
                self._until[i] = started + self.seconds - self.margin
            elif i in todo.renew:
                self._until.pop(i, None)  # someone else wrote it: not ours any more
        return todo

    def start(self) -> Keeper:
        self._thread = threading.Thread(target=self._run, name="nasop-shards", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as e:  # the deadlines lapse by themselves; try again next round
                log.warning("shard leases: %s", e)
            self._stop.wait(self.period)

    def stop(self) -> None:
        """Stop renewing (the leases lapse; a graceful shutdown could release them instead)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.period + 5)
