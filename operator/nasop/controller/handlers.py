"""kopf registration: each handler is a few lines that call plain functions.

One daemon per NASExperiment drives its search (kopf stops it on operator shutdown and when a
higher-priority peer takes over); startup loads the settings once.

No finalizer. kopf puts a finalizer on every object a daemon serves (kopf 1.45.2 `on.daemon`
hard-codes `requires_finalizer=True`; nolar/kopf#833, #896), so a NASExperiment deleted while no
operator runs would hang in Terminating. nasop needs nothing to happen before the object goes:
its jobs and state ConfigMap carry ownerReferences, so Kubernetes' garbage collector removes them.
So the daemon is registered without the finalizer (:func:`_without_finalizer`), kopf removes a
finalizer under nasop's name wherever it finds one, and a deletion reaches the running daemon
through a watch-event handler (:func:`notice_deletion`), which needs no finalizer: the driver then
stops, cancels the experiment's running jobs at once, and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from typing import Any

import kopf

from nasop import spec
from nasop.controller import driver, gate, kube, metrics, shards, watches
from nasop.controller.settings import Settings
from nasop.trials import harvest

SETTINGS: dict[str, Settings] = {}
#: experiment uid -> set when its deletion was seen (by the watch-event handler)
DELETIONS: dict[str, asyncio.Event] = {}
#: experiment uid -> set when its spec's generation changed (a finished search sleeps until then)
RESPECS: dict[str, asyncio.Event] = {}
_GENERATIONS: dict[str, int | None] = {}  # the generation each experiment's RESPECS was set for
#: the shard leases of this replica, when the replicas share the experiments (NASOP_SHARDS)
KEEPER: dict[str, shards.Keeper] = {}
#: the API client and trial watches all experiments share (watches.py), from startup to cleanup
WATCHES: dict[str, watches.Watches] = {}
CLOSING: set[asyncio.Task[None]] = set()  # the task that closes them if kopf is cancelled
#: how many searches open at once (NASOP_OPEN_WORKERS), from startup; absent: no bound
OPENING: dict[str, asyncio.Semaphore] = {}
#: how many ticks run at once, woken ones first (NASOP_TICK_SLOTS), from startup; absent: no bound
GATE: dict[str, gate.PriorityGate] = {}
FINALIZER = "nasop.dev/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Finalizer and progress annotations under nasop's own prefix; settings loaded once."""
    current = SETTINGS.setdefault("current", Settings.load())
    settings.persistence.finalizer = FINALIZER  # kopf removes it: no handler here needs one
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="nasop.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="nasop.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270  # re-list regularly; survives dropped watches
    settings.watching.client_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # Watching named namespaces needs no cluster-scoped permission (the chart's rbac.scope=
    # namespaced grants none): kopf then finds its resources once by API discovery instead of
    # watching CRDs and namespaces, which it would retry for 18 s on 403s before falling back.
    settings.scanning.disabled = bool(current.namespaces)
    if current.peering_priority is not None:
        settings.peering.priority = current.peering_priority


@kopf.on.startup()
async def io_threads(**_: Any) -> None:
    """Threads for the drivers' blocking calls (the Kubernetes client, each tick): asyncio's
    default of cpu_count + 4 would queue hundreds of experiments' ticks behind six threads
    waiting on the API server (measured: bench/operator_scale.py, docs/benchmarks.md)."""
    current = SETTINGS.get("current") or Settings.load()
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(current.io_threads, thread_name_prefix="nasop-io")
    )
    if current.open_workers > 0:  # made in the loop that uses it
        OPENING["current"] = asyncio.Semaphore(current.open_workers)
    if current.tick_slots > 0:
        GATE["current"] = gate.PriorityGate(current.tick_slots)


@kopf.on.startup()
async def shared_watches(**_: Any) -> None:
    """One API client (a connection per I/O thread) and the trial watches for all experiments:
    not a client, a kubeconfig read and GETs per trial per tick for each (watches.py)."""
    current = SETTINGS.get("current") or Settings.load()
    if not current.watch:
        return
    api = await asyncio.to_thread(kube.api_client, current.io_threads)
    shared = WATCHES["current"] = watches.Watches(
        api, current.namespaces, asyncio.get_running_loop()
    )
    closing = asyncio.create_task(watches.close_on_exit(shared), name="nasop-watches")
    CLOSING.add(closing)
    closing.add_done_callback(CLOSING.discard)


@kopf.on.cleanup()
def stop_watches(**_: Any) -> None:
    shared = WATCHES.pop("current", None)
    if shared is not None:
        shared.close()


@kopf.on.startup()
async def release_orphans(logger: kopf.Logger, **_: Any) -> None:
    """Let go of trial pods whose experiment was deleted while no operator ran (they hold
    nasop's harvest finalizer; nothing else would release them)."""
    current = SETTINGS.get("current") or Settings.load()
    try:
        api = await asyncio.to_thread(kube.api_client)
        try:
            released = await asyncio.to_thread(harvest.release_orphans, api, current.namespaces)
        finally:
            api.close()
    except Exception as e:  # never keeps the operator from starting
        logger.warning("releasing the pods of deleted experiments failed: %s", e)
        return
    if released:
        logger.info("released the pods of deleted experiments: %s", ", ".join(released))


@kopf.daemon(spec.GROUP, spec.VERSION, spec.PLURAL, cancellation_timeout=10.0, backoff=5.0)
async def drive_experiment(
    body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any
) -> None:
    """Drive one experiment's search until it is deleted (or the daemon is stopped)."""

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    uid, ns, name = body["metadata"]["uid"], body["metadata"]["namespace"], body["metadata"]["name"]
    deleted = DELETIONS.setdefault(uid, asyncio.Event())
    respec = RESPECS.setdefault(uid, asyncio.Event())
    keeper = KEEPER.get("current")
    try:
        await driver.drive(
            body,
            SETTINGS.get("current") or Settings.load(),
            stopped,
            logger,
            emit,
            deleted=deleted,
            owns=(lambda: keeper.holds(ns, name)) if keeper is not None else None,
            watches=WATCHES.get("current"),
            opening=OPENING.get("current"),
            gate=GATE.get("current"),
            respec=respec,
        )
    finally:
        if deleted.is_set():
            DELETIONS.pop(uid, None)
            RESPECS.pop(uid, None)
            _GENERATIONS.pop(uid, None)


def _is_deletion(type: str, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event(spec.GROUP, spec.VERSION, spec.PLURAL, when=_is_deletion)
async def notice_deletion(name: str, namespace: str | None, uid: str, **_: Any) -> None:
    """The object is gone (no finalizer held it): tell its daemon, forget its metrics."""
    DELETIONS.setdefault(uid, asyncio.Event()).set()
    metrics.set_phase(namespace or "", name, None)  # always set: the resource is namespaced


def _spec_changed(type: str, body: kopf.Body, uid: str, **_: Any) -> bool:
    return type != "DELETED" and _GENERATIONS.get(uid) != body["metadata"].get("generation")


@kopf.on.event(spec.GROUP, spec.VERSION, spec.PLURAL, when=_spec_changed)
async def notice_spec_change(body: kopf.Body, uid: str, **_: Any) -> None:
    """The spec changed (or is seen for the first time): wake a finished search, which
    sleeps until then (raising budget.maxTrials resumes it). Filtered by `when`, so the status
    writes of hundreds of experiments call no handler. Async, so it runs in the loop whose
    tasks wait for the event (an asyncio.Event is not set from another thread)."""
    _GENERATIONS[uid] = body["metadata"].get("generation")
    RESPECS.setdefault(uid, asyncio.Event()).set()


def _without_finalizer(fn: Any) -> None:
    """Let the daemon of `fn` serve objects without putting kopf's finalizer on them.

    kopf 1.45.2 offers no public switch for this (its `daemon()` sets requires_finalizer=True
    unconditionally), so the registered handler is replaced by a copy with the flag off.
    tests/operator checks that experiments get no finalizer: a kopf upgrade that changes
    these internals fails there, not silently in a cluster.
    """
    spawning = kopf.get_default_registry()._spawning
    spawning._handlers[:] = [
        dataclasses.replace(h, requires_finalizer=False) if h.fn is fn else h
        for h in spawning._handlers
    ]


_without_finalizer(drive_experiment)
