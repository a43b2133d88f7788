"""Drive one NASExperiment: validate, open (or resume) its search, tick until it ends.

A plain async function that the kopf daemon calls; tests can call it too. Blocking work (Ax,
the Kubernetes client) runs in threads, so the kopf event loop never blocks; the engine runs
generation in its own worker thread on top of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from nasop import errors, spec
from nasop.controller import gate as gates
from nasop.controller import kube, metrics, status_writer
from nasop.controller.settings import Settings
from nasop.controller.watches import Watches
from nasop.engine import conditions
from nasop.engine.search import Search, TickReport
from nasop.state.configmap import ConfigMapStore
from nasop.trials import cluster, harvest, registry
from nasop.trials.runner import TorchXTrialRunner
from nasop.trials.stops import StopRequests

EventSink = Callable[[str, str, str], None]  # (type, reason, message)
EPHEMERAL_LOG_ROOT = "/tmp/nasop-logs"  # a trial's NASOP_LOG_DIR when no volume is mounted
#: after a watched job or pod of the experiment changed: wait this long for the changes that
#: come with it (a job's status and its pods'), then tick once for all of them
WAKE_DELAY = 0.05
#: a finished search is ticked again when its spec changes (`respec`), else after this long:
#: hundreds of finished experiments ticking every few seconds took a core's share for nothing
IDLE_SECONDS = 60.0


def open_search(
    body: Mapping[str, Any],
    manifest: spec.NASExperiment,
    settings: Settings,
    api: Any,
    watches: Watches | None = None,
) -> Search:
    """The search of this resource: state in its ConfigMap, trials as its Volcano jobs or Jobs
    (read from the operator's `watches` of them when given)."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    owner = kube.owner_reference(body)
    template = manifest.spec.trial
    cluster.check_queue(api, template, namespace)
    cluster.check_metrics_source(template)
    kind = cluster.kind_of(template)
    watched = watches.watched(kind, namespace) if watches is not None else None
    runner = TorchXTrialRunner(
        scheduler=kind.scheduler,
        template=template.dump(),
        # with no volume, TensorBoard files stay in the pod (for people, through kubectl cp)
        log_root=template.logs.mount_path if template.logs.claim_name else EPHEMERAL_LOG_ROOT,
        experiment_name=name,
        scheduler_cfg=cluster.scheduler_cfg(template, namespace),
    )
    labels = {  # + experiment/trial from the AppDef
        "app.kubernetes.io/managed-by": "nasop",
        harvest.UID_LABEL: owner["uid"],  # its pods are found by it (harvest.py)
    }
    runner.bind(
        lambda: cluster.runner_factory(api, owner=owner, labels=labels, watched=watched),
        finder=lambda index: cluster.find_job(api, kind, namespace, name, index),
        pack_finder=lambda index: cluster.find_pack(api, kind, namespace, name, index),
        harvester=cluster.harvester(api, kind, namespace, owner["uid"], watched),
        stops=StopRequests(api, namespace, name, owner),
    )
    store = ConfigMapStore(api, namespace, registry=registry.bundle(), owner=owner)
    return Search.open(manifest.spec, name, runner, store)


def _plain(v: Any) -> Any:
    """kopf hands out live Mapping views; pydantic wants plain dicts and lists."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def parse(body: Mapping[str, Any]) -> spec.NASExperiment:
    data = {k: _plain(body.get(k)) for k in ("apiVersion", "kind", "spec")}
    data["metadata"] = {"name": body["metadata"]["name"]}
    return spec.parse_manifest(data)


async def drive(
    body: Mapping[str, Any],
    settings: Settings,
    stopped: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    emit: EventSink,
    api: Any | None = None,
    deleted: asyncio.Event | None = None,
    owns: Callable[[], bool] | None = None,
    watches: Watches | None = None,
    opening: asyncio.Semaphore | None = None,
    gate: gates.PriorityGate | None = None,
    respec: asyncio.Event | None = None,
) -> None:
    """Run until the experiment is deleted or the daemon is stopped; state survives a stop.

    With `opening` (the operator's bound on searches opening at once) the search waits its turn
    to open: hundreds opened at once (their state reads and writes, then their first ticks, all
    under the process's one GIL) slowed every running experiment's tick (docs/benchmarks.md).

    With `gate` (the operator's bound on ticks at once, gate.py) each tick and the status
    write after it wait for a slot: a tick woken by a trial's change before a periodic one, both
    before a search opening.

    With `watches` (the operator's shared client and watches, watches.py) the trials' jobs and
    pods are read from the watches, and a change to one of them starts the next tick at once
    (after WAKE_DELAY, which gathers the changes of one moment into one tick).

    With `owns` (replicas sharing the experiments by shard leases, shards.py) the experiment is
    driven only while `owns()` is True: checked before every tick; when it turns False the
    search is closed at once (the replica that takes the shard over loads the saved state), and
    opened again from the saved state when it turns True.

    With `respec` (set by the operator when the spec's generation changed) a finished search
    sleeps until its spec changes (or IDLE_SECONDS): nothing else can change it.

    A finished search stays watched (raising budget.maxTrials resumes it). On deletion (the
    `deleted` event, kopf's stop reason, or the object found gone after a failed write) the
    search stops launching and the experiment's running jobs are cancelled at once. When the
    saved state cannot be trusted (a conflicting write, a failed read or write) the daemon
    raises kopf.TemporaryError: kopf runs it again, and it reloads the state.
    """
    if api is None:
        api = watches.api if watches is not None else await asyncio.to_thread(kube.api_client)
    loop = _Loop(body, settings, logger, emit, deleted or asyncio.Event(), api)
    loop.watches = watches
    loop.opening, loop.gate = opening, gate
    wake = watches.waker(loop.uid) if watches is not None else None
    loop.drove = owns is None
    priority = gates.TICK
    try:
        while not stopped and not loop.deleted.is_set():
            if owns is not None and not owns():
                await loop.let_go()
                await _sleep(stopped, settings.tick_seconds, loop.deleted)
                continue
            loop.drove = True
            if respec is not None:
                respec.clear()  # a spec change from now on is read by this pass or wakes the next
            change = await loop.read_spec()
            if change == "invalid" or loop.search is None:  # wait for the next spec change
                await _sleep(stopped, settings.tick_seconds, loop.deleted)
                continue
            if wake is not None:
                wake.clear()  # what changes from now on is seen by this tick or wakes the next
            async with gates.held(gate, priority):
                report = await loop.tick()
                published = report is not None and await loop.publish(
                    report, written=change == "changed"
                )
            if report is None or not published:
                break  # the experiment is gone
            # A finished search stays watched: raising budget.maxTrials resumes it.
            if respec is not None and loop.search.finished and not loop.stale:
                await _sleep(stopped, IDLE_SECONDS, loop.deleted, respec)
                priority = gates.TICK
                continue
            pause = 0.2 if report.generating else settings.tick_seconds
            woken = await _sleep(stopped, pause, loop.deleted, wake)
            if woken:
                await _sleep(stopped, WAKE_DELAY, loop.deleted)
            priority = gates.RECONCILE if woken else gates.TICK
    finally:
        if watches is not None:
            watches.forget(loop.uid)
        # kopf cancels the daemon to stop it (and may cancel again): finish the cleanup anyway.
        await asyncio.shield(asyncio.ensure_future(loop.finish(_deleted(stopped))))


class _Loop:
    """One experiment's loop state between ticks; each step of `drive` is a method."""

    def __init__(
        self,
        body: Mapping[str, Any],
        settings: Settings,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        emit: EventSink,
        deleted: asyncio.Event,
        api: Any,
    ) -> None:
        meta = body["metadata"]
        self.body, self.settings, self.logger, self.emit = body, settings, logger, emit
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.deleted, self.api = deleted, api
        self.writer = status_writer.StatusWriter(
            api, self.namespace, self.name, _plain(body.get("status"))
        )
        self.search: Search | None = None
        self.seen_generation: int | None = None
        self.refused: spec.Condition | None = None  # a refused spec change, until reverted
        self.stale = True  # the written status may lag the search (first tick, failed write)
        self.ticking: asyncio.Future[Any] | None = None
        self.kinds: list[cluster.JobKind] = []  # the kind of job the last valid spec launches
        self.drove = False  # this replica drove the experiment (its jobs are its to cancel)
        self.watches: Watches | None = None  # the operator's shared watches (watches.py)
        self.opening: asyncio.Semaphore | None = None  # the bound on searches opening at once
        self.gate: gates.PriorityGate | None = None  # the bound on ticks at once

    async def let_go(self) -> None:
        """Another replica drives the experiment now: close the search (its next owner loads
        the saved state; this replica reads it again if the shard comes back)."""
        if self.ticking is not None:
            await asyncio.wait([self.ticking])
            self.ticking = None
        if self.search is not None:
            search, self.search = self.search, None
            await asyncio.to_thread(search.close)
        self.seen_generation, self.stale = None, True
        self.writer.last = _plain(self.body.get("status")) or {}

    async def read_spec(self) -> str:
        """What the spec did: "unchanged", "changed" (the status must show the new
        generation) or "invalid"."""
        generation = self.body["metadata"].get("generation")
        if generation == self.seen_generation:
            return "unchanged"
        self.seen_generation = generation
        try:
            manifest = parse(self.body)
        except errors.SpecError as e:
            await self.mark_invalid(e.message)
            return "invalid"
        self.kinds = [cluster.kind_of(manifest.spec.trial)]
        if self.search is None:
            await self.open(manifest)
        else:
            self.update(manifest)
        return "changed"

    async def open(self, manifest: spec.NASExperiment) -> None:
        try:
            async with self.opening or contextlib.nullcontext(), gates.held(self.gate, gates.OPEN):
                self.search = await asyncio.to_thread(
                    open_search, self.body, manifest, self.settings, self.api, self.watches
                )
        except errors.SpecError as e:  # e.g. search space changed vs stored state
            await self.mark_invalid(e.message)
            return
        except errors.BackendUnavailable as e:  # reading the state failed
            await self.reload(e, "state")
            return  # the experiment is gone
        self.emit(
            "Normal",
            "SearchStarted",
            f"{len(self.search.experiment.trials)} trials recorded; state in ConfigMap",
        )

    def update(self, manifest: spec.NASExperiment) -> None:
        assert self.search is not None
        try:
            self.search.update_spec(manifest.spec)
            self.refused = None
        except errors.SpecError as e:
            self.emit("Warning", "SpecChangeRefused", e.message)
            self.refused = spec.Condition(
                type=conditions.SPEC_ACCEPTED,
                status="False",
                reason="ImmutableField",
                message=e.message,
                last_transition_time=spec.now_rfc3339(),
            )

    async def tick(self) -> TickReport | None:
        """One engine tick in a thread; None when the experiment turned out to be gone."""
        assert self.search is not None
        try:
            # shielded: a cancelled daemon still lets the tick's thread finish (see finish)
            self.ticking = asyncio.ensure_future(asyncio.to_thread(self.search.tick))
            return await asyncio.shield(self.ticking)
        except errors.StateConflict as e:  # another writer: our copy is stale
            await self.reload(e, "conflict")
        except errors.BackendUnavailable as e:  # the API server failed a state write
            await self.reload(e, "state")
        except errors.StateTooLarge as e:
            self.emit("Warning", "StateTooLarge", str(e))
            await _write(self.writer, status_writer.failed(self.writer.last, str(e)))
            raise kopf.PermanentError(str(e)) from e
        return None

    async def reload(self, e: Exception, kind: str) -> None:
        """Give the state up and let kopf run the daemon again, which reloads it: at once
        after a conflict (another writer), a tick later after a failed read or write unless
        the experiment is gone (then it returns)."""
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        if self.search is not None:
            await asyncio.to_thread(self.search.close)
            self.search = None  # closed once: finish() must not close it again
        if kind == "conflict":
            raise kopf.TemporaryError(f"{e}; reloading the state", delay=0.0)
        if not await self.gone():
            raise kopf.TemporaryError(f"{e}; reloading the state", delay=self.settings.tick_seconds)

    async def publish(self, report: TickReport, written: bool) -> bool:
        """Events, metrics and (when it changed) the status; False if the experiment is gone."""
        assert self.search is not None
        if self.search.last_generation_seconds is not None:
            metrics.GENERATION_SECONDS.observe(self.search.last_generation_seconds)
            self.search.last_generation_seconds = None
        for ev in report.events:
            self.emit("Warning" if ev.warning else "Normal", ev.reason, ev.message)
        # The status is a function of the search and the spec: rebuild it only when either
        # changed (or the last write failed), not on every tick.
        self.stale = self.stale or report.changed or written
        if not self.stale:
            return True
        search = self.search
        status = await asyncio.to_thread(lambda: search.status().dump())  # off the event loop
        status["observedGeneration"] = self.seen_generation
        if self.refused is not None:
            status = status_writer.with_condition(status, self.refused)
        self.stale = not await _write(self.writer, status)
        if self.stale and await self.gone():
            return False
        metrics.set_phase(self.namespace, self.name, status["phase"])
        metrics.set_trials(self.namespace, self.name, status["trials"])
        return True

    async def mark_invalid(self, message: str) -> None:
        await _write(self.writer, status_writer.invalid(message, self.seen_generation))
        self.emit("Warning", "InvalidSpec", message[:1000])
        metrics.set_phase(self.namespace, self.name, "Invalid")

    async def gone(self) -> bool:
        """After a failed write: is the experiment itself gone (deleted, maybe recreated)?"""
        if not await asyncio.to_thread(
            kube.experiment_exists, self.api, self.namespace, self.name, self.uid
        ):
            self.deleted.set()
        return self.deleted.is_set()

    async def finish(self, stopped_by_deletion: bool) -> None:
        """Stop the search (no launch after this) and, if it was deleted, cancel its jobs."""
        if self.ticking is not None:
            await asyncio.wait([self.ticking])  # a tick in its thread may be launching a trial
            if not self.ticking.cancelled() and self.ticking.exception() is not None:
                self.logger.debug("the last tick failed: %s", self.ticking.exception())
        if self.search is not None:
            await asyncio.to_thread(self.search.close)  # waits for a generation step
        if self.drove and (self.deleted.is_set() or stopped_by_deletion):
            await _cancel_jobs(
                self.api, self.kinds, self.namespace, self.name, self.uid, self.emit, self.logger
            )


def _deleted(stopped: Any) -> bool:
    return "DELETED" in str(getattr(stopped, "reason", None)).upper()


async def _cancel_jobs(
    api: Any,
    kinds: list[cluster.JobKind],
    namespace: str,
    name: str,
    uid: str,
    emit: EventSink,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Cancel the deleted experiment's jobs now (the garbage collector would, later), and let
    go of its pods (their output is no longer wanted), so that none stays Terminating.

    The state ConfigMap is left to the garbage collector: writing it now could only recreate it.
    """
    try:
        released = await asyncio.to_thread(harvest.release_experiment, api, namespace, uid)
        if released:
            logger.info("released the pods of deleted %s: %s", name, ", ".join(released))
    except Exception as e:  # the next operator start releases them (handlers.release_orphans)
        logger.warning("releasing the pods of deleted %s failed: %s", name, e)
    try:
        cancelled = await asyncio.to_thread(cluster.cancel_jobs, api, kinds, namespace, name, uid)
    except Exception as e:  # the garbage collector still removes them
        logger.warning("cancelling the jobs of deleted %s failed: %s", name, e)
        return
    emit(
        "Normal",
        "SearchDeleted",
        f"experiment deleted: {len(cancelled)} running trial jobs cancelled"
        + (f" ({', '.join(cancelled)})" if cancelled else ""),
    )


async def _write(writer: status_writer.StatusWriter, status: dict[str, Any]) -> bool:
    """False when the API server hiccuped: the caller writes again next tick."""
    try:
        await asyncio.to_thread(writer.write, status)
    except Exception as e:
        metrics.RECONCILE_ERRORS.labels(kind="status").inc()
        logging.getLogger(__name__).warning("status write failed: %s", e)
        return False
    return True


async def _sleep(
    stopped: Any,
    seconds: float,
    deleted: asyncio.Event | None = None,
    wake: asyncio.Event | None = None,
) -> bool:
    """Sleep `seconds`, waking early when the daemon is stopped, the experiment deleted or
    `wake` set; True when it was `wake` (and nothing else) that ended the sleep."""
    waits: list[asyncio.Future[Any]] = []
    if deleted is not None:
        waits.append(asyncio.ensure_future(deleted.wait()))
    woken = asyncio.ensure_future(wake.wait()) if wake is not None else None
    if woken is not None:
        waits.append(woken)
    if hasattr(stopped, "wait"):
        waits.append(asyncio.ensure_future(stopped.wait(seconds)))
    else:
        waits.append(asyncio.ensure_future(asyncio.sleep(seconds)))
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return woken is not None and done == {woken}


__all__ = ["drive", "open_search", "parse"]
