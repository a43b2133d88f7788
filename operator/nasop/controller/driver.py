"""Drive one NASExperiment: validate, open (or resume) its search, tick until it ends.

A plain async function that the kopf daemon calls; tests can call it too. Blocking work (Ax,
the Kubernetes client) runs in threads, so the kopf event loop never blocks; the engine runs
generation in its own worker thread on top of that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nasop import errors, spec
from nasop.controller import kube, metrics, status_writer
from nasop.controller.settings import Settings
from nasop.engine import conditions
from nasop.engine.search import Event, Search
from nasop.state.configmap import ConfigMapStore
from nasop.trials import cluster, registry
from nasop.trials.runner import TorchXTrialRunner

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


def open_search(
    body: Mapping[str, Any], manifest: spec.NASExperiment, settings: Settings, api: Any
) -> Search:
    """The search of this resource: state in its ConfigMap, trials as its Volcano jobs or Jobs."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    owner = kube.owner_reference(body)
    template = manifest.spec.trial
    cluster.check_queue(api, template, namespace)
    kind = cluster.kind_of(template)
    runner = TorchXTrialRunner(
        scheduler=kind.scheduler,
        template=template.dump(),
        log_root=template.logs.mount_path,
        experiment_name=name,
        scheduler_cfg=cluster.scheduler_cfg(template, namespace),
    )
    labels = {"app.kubernetes.io/managed-by": "nasop"}  # + experiment/trial from the AppDef
    runner.bind(
        lambda: cluster.runner_factory(api, owner=owner, labels=labels),
        finder=lambda index: cluster.find_job(api, kind, namespace, name, index),
        pack_finder=lambda index: cluster.find_pack(api, kind, namespace, name, index),
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
    logger: logging.Logger,
    emit: EventSink,
    api: Any | None = None,
    deleted: asyncio.Event | None = None,
) -> None:
    """Run until the experiment is deleted or the daemon is stopped; state survives a stop.

    A finished search stays watched (raising budget.maxTrials resumes it). On deletion (the
    `deleted` event, kopf's stop reason, or the object found gone after a failed write) the
    search stops launching and the experiment's running jobs are cancelled at once.
    """
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    deleted = deleted if deleted is not None else asyncio.Event()
    api = api or await asyncio.to_thread(kube.api_client)
    writer = status_writer.StatusWriter(api, namespace, name, _plain(body.get("status")))
    search: Search | None = None
    seen_generation: int | None = None
    refused: spec.Condition | None = None  # a refused spec change, shown until it is reverted
    stale = True  # the written status may lag the search (first tick, failed write)
    ticking: asyncio.Future[Any] | None = None
    kinds: list[cluster.JobKind] = []  # the kind of job the last valid spec launches

    async def mark_invalid(message: str, generation: int | None) -> None:
        await _write(writer, status_writer.invalid(message, generation))
        emit("Warning", "InvalidSpec", message[:1000])
        metrics.set_phase(namespace, name, "Invalid")

    async def gone() -> bool:
        """After a failed write: is the experiment itself gone (deleted, maybe recreated)?"""
        if not await asyncio.to_thread(kube.experiment_exists, api, namespace, name, uid):
            deleted.set()
        return deleted.is_set()

    try:
        while not stopped and not deleted.is_set():
            generation = body["metadata"].get("generation")
            dirty = generation != seen_generation  # status must show the new generation
            if dirty:
                seen_generation = generation
                try:
                    manifest = parse(body)
                except errors.SpecError as e:
                    await mark_invalid(e.message, generation)
                    await _sleep(stopped, settings.tick_seconds, deleted)
                    continue
                kinds = [cluster.kind_of(manifest.spec.trial)]
                if search is None:
                    try:
                        search = await asyncio.to_thread(open_search, body, manifest, settings, api)
                    except errors.SpecError as e:  # e.g. search space changed vs stored state
                        await mark_invalid(e.message, generation)
                        continue
                    except errors.BackendUnavailable as e:  # reading the state failed: retry
                        metrics.RECONCILE_ERRORS.labels(kind="state").inc()
                        logger.warning("%s; retrying", e)
                        seen_generation = None
                        if not await gone():
                            await _sleep(stopped, settings.tick_seconds, deleted)
                        continue
                    emit("Normal", "SearchStarted",
                         f"{len(search.experiment.trials)} trials recorded; state in ConfigMap")
                else:
                    try:
                        search.update_spec(manifest.spec)
                        refused = None
                    except errors.SpecError as e:
                        emit("Warning", "SpecChangeRefused", e.message)
                        refused = spec.Condition(type=conditions.SPEC_ACCEPTED, status="False",
                                                 reason="ImmutableField", message=e.message,
                                                 last_transition_time=spec.now_rfc3339())
            if search is None:  # still invalid: wait for the next spec change
                await _sleep(stopped, settings.tick_seconds, deleted)
                continue

            try:
                # shielded: a cancelled daemon still lets the tick's thread finish (see _finish)
                ticking = asyncio.ensure_future(asyncio.to_thread(search.tick))
                report = await asyncio.shield(ticking)
            except errors.StateConflict as e:
                metrics.RECONCILE_ERRORS.labels(kind="conflict").inc()
                logger.warning("%s; reloading", e)
                search.close()
                search, seen_generation = None, None
                continue
            except errors.BackendUnavailable as e:  # the API server failed a state write
                metrics.RECONCILE_ERRORS.labels(kind="state").inc()
                logger.warning("%s; reloading", e)
                search.close()
                search, seen_generation = None, None
                if not await gone():
                    await _sleep(stopped, settings.tick_seconds, deleted)
                continue
            except errors.StateTooLarge as e:
                emit("Warning", "StateTooLarge", str(e))
                await _write(writer, status_writer.failed(writer.last, str(e)))
                return
            if search.last_generation_seconds is not None:
                metrics.GENERATION_SECONDS.observe(search.last_generation_seconds)
                search.last_generation_seconds = None
            for ev in report.events:
                _emit(emit, ev)
            # The status is a function of the search and the spec: rebuild it only when either
            # changed (or the last write failed), not on every tick.
            stale = stale or report.changed or dirty
            if stale:
                status = search.status().dump()
                status["observedGeneration"] = seen_generation
                if refused is not None:
                    status = status_writer.with_condition(status, refused)
                stale = not await _write(writer, status)
                if stale and await gone():
                    break
                metrics.set_phase(namespace, name, status["phase"])
                metrics.set_trials(namespace, name, status["trials"])
            # A finished search stays watched: raising budget.maxTrials resumes it.
            await _sleep(stopped, 0.2 if report.generating else settings.tick_seconds, deleted)
    finally:
        # kopf cancels the daemon to stop it (and may cancel again): finish the cleanup anyway.
        await asyncio.shield(asyncio.ensure_future(_finish(
            search, ticking, deleted.is_set() or _deleted(stopped), api, kinds, namespace, name,
            uid, emit, logger)))


async def _finish(search: Search | None, ticking: asyncio.Future[Any] | None, deleted: bool,
                  api: Any, kinds: list[cluster.JobKind], namespace: str, name: str, uid: str,
                  emit: EventSink, logger: logging.Logger) -> None:
    """Stop the search (no launch after this) and, if it was deleted, cancel its jobs."""
    if ticking is not None:
        await asyncio.wait([ticking])  # a tick in its thread may be launching a trial
        if not ticking.cancelled() and ticking.exception() is not None:
            logger.debug("the last tick failed: %s", ticking.exception())
    if search is not None:
        await asyncio.to_thread(search.close)  # waits for a generation; launches nothing more
    if deleted:
        await _cancel_jobs(api, kinds, namespace, name, uid, emit, logger)


def _deleted(stopped: Any) -> bool:
    return "DELETED" in str(getattr(stopped, "reason", None)).upper()


async def _cancel_jobs(api: Any, kinds: list[cluster.JobKind], namespace: str, name: str,
                       uid: str, emit: EventSink, logger: logging.Logger) -> None:
    """Cancel the deleted experiment's jobs now (the garbage collector would, later).

    The state ConfigMap is left to the garbage collector: writing it now could only recreate it.
    """
    try:
        cancelled = await asyncio.to_thread(cluster.cancel_jobs, api, kinds, namespace, name, uid)
    except Exception as e:  # the garbage collector still removes them
        logger.warning("cancelling the jobs of deleted %s failed: %s", name, e)
        return
    emit("Normal", "SearchDeleted",
         f"experiment deleted: {len(cancelled)} running trial jobs cancelled"
         + (f" ({', '.join(cancelled)})" if cancelled else ""))


def _emit(emit: EventSink, ev: Event) -> None:
    emit("Warning" if ev.warning else "Normal", ev.reason, ev.message)


async def _write(writer: status_writer.StatusWriter, status: dict[str, Any]) -> bool:
    """False when the API server hiccuped: the caller writes again next tick."""
    try:
        await asyncio.to_thread(writer.write, status)
    except Exception as e:
        metrics.RECONCILE_ERRORS.labels(kind="status").inc()
        logging.getLogger(__name__).warning("status write failed: %s", e)
        return False
    return True


async def _sleep(stopped: Any, seconds: float, deleted: asyncio.Event | None = None) -> None:
    """Sleep `seconds`, waking early when the daemon is stopped or the experiment deleted."""
    waits = [asyncio.ensure_future(deleted.wait())] if deleted is not None else []
    if hasattr(stopped, "wait"):
        waits.append(asyncio.ensure_future(stopped.wait(seconds)))
    else:
        waits.append(asyncio.ensure_future(asyncio.sleep(seconds)))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


__all__ = ["drive", "open_search", "parse"]
