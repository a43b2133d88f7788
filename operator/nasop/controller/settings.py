"""The operator's settings, loaded once at startup from flags and the environment."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    #: namespaces to watch; empty means all (cluster-wide)
    namespaces: list[str] = field(default_factory=list)
    #: where the shared trial log volume is mounted in the operator pod
    log_root: str = "/logs"
    #: seconds between ticks of one experiment
    tick_seconds: float = 2.0
    liveness_port: int = 8080
    metrics_port: int = 9090
    #: kopf peering name (several replicas: only the highest-priority one is active)
    peering: str | None = None
    #: this replica's kopf peering priority. kopf pauses *every* operator that sees a live peer
    #: of equal priority, so replicas must differ: NASOP_PEERING_PRIORITY, else a random one
    peering_priority: int | None = None
    #: threads for blocking calls (API requests in each experiment's tick), all experiments
    io_threads: int = 64
    #: read the trial jobs and pods from shared watches (NASOP_WATCH=0: a GET per trial per
    #: tick, as before them; controller/watches.py)
    watch: bool = True
    #: searches of this process that open (read or create their state) at once; the others
    #: wait their turn, so a burst of hundreds does not starve the running ones' ticks
    #: (NASOP_OPEN_WORKERS; 0: no bound)
    open_workers: int = 1
    #: experiments' ticks (with their status writes) that run at once, woken ones first
    #: (NASOP_TICK_SLOTS; 0: no bound; gate.py)
    tick_slots: int = 2
    #: shards the experiments are split into across replicas (0: no sharding; shards.py)
    shards: int = 0
    #: seconds a shard lease lasts unrenewed before another replica may take it
    lease_seconds: int = 15
    #: where the shard leases live: the first watched namespace (the chart's Role there grants
    #: leases), else the operator's own (POD_NAMESPACE; its ClusterRole grants them everywhere)
    lease_namespace: str = "default"

    def kopf_scope(self) -> dict[str, object]:
        """kopf.operator's scope arguments: the named namespaces, or cluster-wide with none
        (kopf iterates ``namespaces`` either way, so it is a list, never None)."""
        return {"clusterwide": not self.namespaces, "namespaces": list(self.namespaces)}

    @classmethod
    def load(cls, args: object | None = None) -> Settings:
        env = os.environ
        ns = list(getattr(args, "namespace", None) or [])
        if not ns and env.get("WATCH_NAMESPACES"):
            ns = [n.strip() for n in env["WATCH_NAMESPACES"].split(",") if n.strip()]
        log_root = getattr(args, "log_root", None) or env.get("NASOP_LOG_ROOT") or "/logs"
        tick = float(env.get("NASOP_TICK_SECONDS", "2.0"))
        if tick <= 0:
            raise ValueError("NASOP_TICK_SECONDS must be > 0")
        return cls(
            namespaces=ns,
            log_root=log_root,
            tick_seconds=tick,
            liveness_port=int(getattr(args, "liveness_port", 8080) or 8080),
            metrics_port=int(getattr(args, "metrics_port", 9090) or 9090),
            peering=env.get("NASOP_PEERING") or None,
            peering_priority=_priority(env) if env.get("NASOP_PEERING") else None,
            io_threads=max(1, int(env.get("NASOP_IO_THREADS", "64"))),
            watch=env.get("NASOP_WATCH", "1") != "0",
            open_workers=max(0, int(env.get("NASOP_OPEN_WORKERS", "1"))),
            tick_slots=max(0, int(env.get("NASOP_TICK_SLOTS", "2"))),
            shards=_shards(env),
            lease_seconds=int(env.get("NASOP_LEASE_SECONDS", "15")),
            lease_namespace=ns[0] if ns else env.get("POD_NAMESPACE") or "default",
        )


def _priority(env: Mapping[str, str]) -> int:
    if env.get("NASOP_PEERING_PRIORITY"):
        return int(env["NASOP_PEERING_PRIORITY"])
    return random.SystemRandom().randint(1, 2**31 - 1)


def _shards(env: Mapping[str, str]) -> int:
    shards = int(env.get("NASOP_SHARDS") or 0)
    if shards < 0:
        raise ValueError("NASOP_SHARDS must be >= 0 (0: one operator drives every experiment)")
    if shards and env.get("NASOP_PEERING"):
        raise ValueError(
            "NASOP_SHARDS and NASOP_PEERING exclude each other: with shards every replica "
            "drives its own share; unset one of them"
        )
    return shards
