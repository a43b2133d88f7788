"""`nasop operator`: run the kopf operator with liveness and Prometheus endpoints."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf

from nasop.controller import handlers, kube, metrics, shards
from nasop.controller.settings import Settings


@kopf.on.login()
def login(**kwargs: object) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else KUBECONFIG / ~/.kube/config."""
    # kopf passes its login kwargs through untyped; login_via_client names them
    return kopf.login_via_client(**kwargs)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args)
    handlers.SETTINGS["current"] = settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kube.api_client()  # fail fast with a clear error when no cluster configuration exists
    metrics.serve(settings.metrics_port)
    if settings.shards:  # every replica drives the experiments of the shards it holds
        handlers.KEEPER["current"] = shards.Keeper(
            kube.api_client(),
            settings.lease_namespace,
            shards.holder_identity(),
            settings.shards,
            settings.lease_seconds,
        ).start()
    asyncio.run(
        kopf.operator(
            # namespaces/clusterwide, typed as one dict of both
            **settings.kopf_scope(),  # type: ignore[arg-type]
            liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
            standalone=settings.peering is None,
            peering_name=settings.peering,
            # the replica's priority is set by the startup handler (handlers.configure), which kopf
            # runs before peering starts, whichever way the handlers are run
        )
    )
    return 0
