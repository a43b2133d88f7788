"""kopf registration: each handler is a few lines that call plain functions.

One daemon per NASExperiment drives its search (kopf stops it on delete, on operator shutdown,
and when a higher-priority peer takes over); startup loads the settings once.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from nasop import spec
from nasop.controller import driver, metrics
from nasop.controller.settings import Settings

SETTINGS: dict[str, Settings] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Finalizer and progress annotations under nasop's own prefix; settings loaded once."""
    SETTINGS.setdefault("current", Settings.load())
    settings.persistence.finalizer = "nasop.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="nasop.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="nasop.dev", key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270  # re-list regularly; survives dropped watches
    settings.watching.client_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]


@kopf.daemon(spec.GROUP, spec.VERSION, spec.PLURAL, cancellation_timeout=10.0, backoff=5.0)
async def drive_experiment(
    body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any
) -> None:
    """Drive one experiment's search until it ends (or the daemon is stopped)."""

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    await driver.drive(body, SETTINGS.get("current") or Settings.load(), stopped, logger, emit)


@kopf.on.delete(spec.GROUP, spec.VERSION, spec.PLURAL, optional=True)
def forget(name: str, namespace: str, **_: Any) -> None:
    """Jobs and the state ConfigMap are owned by the experiment: Kubernetes deletes them."""
    metrics.set_phase(namespace, name, None)
