"""A Kubernetes API client from the operator's own configuration (in-cluster or KUBECONFIG)."""

from __future__ import annotations

import os
from typing import Any


def api_client(connections: int | None = None) -> Any:
    """TorchX alone reads only ~/.kube/config; the operator hands this client to it instead.

    `connections`: how many connections it keeps open to the API server (one per thread that
    may use it at once; the client's default is five per core)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()  # also the default configuration, as before
        cfg = client.Configuration.get_default_copy()
    else:
        cfg = client.Configuration()
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
    if connections:
        cfg.connection_pool_maxsize = connections
    return client.ApiClient(cfg)


def owner_reference(body: Any) -> dict[str, Any]:
    """An ownerReference to the NASExperiment: its jobs and ConfigMap go when it goes."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", "nasop.dev/v1alpha1"),
        "kind": body.get("kind", "NASExperiment"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def experiment_exists(api: Any, namespace: str, name: str, uid: str) -> bool:
    """False when the NASExperiment is gone (or replaced by a new one of the same name).

    Any other failure answers True: only a definite 404 or another uid means deleted.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from nasop import spec

    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            spec.GROUP, spec.VERSION, namespace, spec.PLURAL, name
        )
    except ApiException as e:
        return e.status != 404
    except Exception:
        return True
    return bool(obj.get("metadata", {}).get("uid") == uid)
