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
from nasop.controller import kube, metrics, statuses
from nasop.controller.settings import Settings
from nasop.engine.search import Event, Search
from nasop.state.configmap import ConfigMapStore
from nasop.trials import registry, volcano
from nasop.trials.runner import TorchXTrialRunner

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


def open_search(
    body: Mapping[str, Any], manifest: spec.NASExperiment, settings: Settings, api: Any
) -> Search:
    """The search of this resource: state in its ConfigMap, trials as its Volcano jobs."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    owner = kube.owner_reference(body)
    runner = TorchXTrialRunner(
        scheduler="kubernetes",
        template=manifest.spec.trial.dump(),
        log_root=manifest.spec.trial.logs.mount_path,
        experiment_name=name,
        scheduler_cfg={"namespace": namespace, "queue": manifest.spec.trial.queue},
    )
    labels = {volcano.EXPERIMENT_LABEL: name, "app.kubernetes.io/managed-by": "nasop"}
    runner.bind(
        lambda: volcano.runner_factory(api, owner=owner, labels=labels),
        finder=lambda index: volcano.find_job(api, namespace, name, index),
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
) -> None:
    """Run until the search ends or the daemon is stopped; state survives either."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    api = api or await asyncio.to_thread(kube.api_client)
    writer = statuses.StatusWriter(api, namespace, name, body.get("status"))
    search: Search | None = None
    seen_generation: int | None = None
    try:
        while not stopped:
            generation = body["metadata"].get("generation")
            if generation != seen_generation:
                try:
                    manifest = parse(body)
                except errors.SpecError as e:
                    if seen_generation != generation:
                        await _write(writer, statuses.invalid(e.message, generation))
                        emit("Warning", "InvalidSpec", e.message[:1000])
                        metrics.set_phase(namespace, name, "Invalid")
                    seen_generation = generation
                    await _sleep(stopped, settings.tick_seconds)
                    continue
                if search is None:
                    try:
                        search = await asyncio.to_thread(open_search, body, manifest, settings, api)
                    except errors.SpecError as e:  # e.g. search space changed vs stored state
                        await _write(writer, statuses.invalid(e.message, generation))
                        emit("Warning", "InvalidSpec", e.message[:1000])
                        seen_generation = generation
                        continue
                    emit("Normal", "SearchStarted",
                         f"{len(search.experiment.trials)} trials recorded; state in ConfigMap")
                else:
                    try:
                        search.update_spec(manifest.spec)
                    except errors.SpecError as e:
                        emit("Warning", "SpecChangeRefused", e.message)
                        cond = spec.Condition(type="SpecAccepted", status="False",
                                              reason="ImmutableField", message=e.message,
                                              last_transition_time=spec.now_rfc3339())
                        await _write(writer, statuses.with_condition(writer.last, cond))
                seen_generation = generation
            assert search is not None  # noqa: S101 - set above

            try:
                report = await asyncio.to_thread(search.tick)
            except errors.StateConflict as e:
                metrics.RECONCILE_ERRORS.labels(kind="conflict").inc()
                logger.warning("%s; reloading", e)
                search.close()
                search, seen_generation = None, None
                continue
            except errors.StateTooLarge as e:
                emit("Warning", "StateTooLarge", str(e))
                await _write(writer, {**writer.last, "phase": "Failed", "message": str(e)})
                return
            if search.last_generation_seconds is not None:
                metrics.GENERATION_SECONDS.observe(search.last_generation_seconds)
                search.last_generation_seconds = None
            for ev in report.events:
                _emit(emit, ev)
            status = search.status().dump()
            status["observedGeneration"] = seen_generation
            await _write(writer, status)
            metrics.set_phase(namespace, name, status["phase"])
            metrics.set_trials(namespace, name, status["trials"])
            if search.finished:
                return
            await _sleep(stopped, 0.2 if report.generating else settings.tick_seconds)
    finally:
        if search is not None:
            if getattr(stopped, "reason", None) is not None and _deleted(stopped):
                await asyncio.to_thread(search.cancel_running, "experiment deleted")
            search.close()


def _deleted(stopped: Any) -> bool:
    reason = getattr(stopped, "reason", None)
    return reason is not None and "DELETED" in str(reason).upper()


def _emit(emit: EventSink, ev: Event) -> None:
    emit("Warning" if ev.warning else "Normal", ev.reason, ev.message)


async def _write(writer: statuses.StatusWriter, status: dict[str, Any]) -> None:
    try:
        await asyncio.to_thread(writer.write, status)
    except Exception as e:  # the API server hiccuped: write again next tick
        metrics.RECONCILE_ERRORS.labels(kind="status").inc()
        logging.getLogger(__name__).warning("status write failed: %s", e)


async def _sleep(stopped: Any, seconds: float) -> None:
    if hasattr(stopped, "wait"):
        await stopped.wait(seconds)
    else:
        await asyncio.sleep(seconds)


__all__ = ["drive", "open_search", "parse"]
