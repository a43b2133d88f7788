"""A cluster experiment, read-only: what `nasop status NAMESPACE/NAME` and `nasop report
NAMESPACE/NAME` look at.

The operator keeps everything a report needs in the cluster: the spec in the NASExperiment, the
Ax experiment (curves included) and nasop's book in the state ConfigMaps it owns
(state/configmap.py). This module reads both, with two verbs and no more (`get` on
nasexperiments.nasop.dev and on configmaps), and opens a search on what it read through a
ReadOnlyStore, so the page and the status block are built by the same code as a local run's.
Nothing is written and no trial is polled.

The kubeconfig is found as kubectl finds it: `--kubeconfig`, else $KUBECONFIG (a list of files,
merged), else ~/.kube/config, else the in-cluster service account. Every failure says what to do:
a missing experiment or CRD, no saved state yet, a verb RBAC refuses, a server out of reach.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from nasop import errors, spec

if TYPE_CHECKING:
    from nasop.engine.search import Search

#: seconds to connect, then to read one answer (a state ConfigMap is at most ~1 MB)
REQUEST_TIMEOUT = (10.0, 60.0)
DEFAULT_KUBECONFIG = os.path.join("~", ".kube", "config")
#: where the read-only runner says trial logs are; nothing reads them (no trial is polled)
UNUSED_LOG_ROOT = "/tmp/nasop-logs"


@dataclasses.dataclass(frozen=True)
class ExperimentRef:
    """A NASExperiment in a cluster, as `NAMESPACE/NAME`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# ----------------------------------------------------------------------------- the client


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A client configured as kubectl would be (never the client library's global default)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    default = os.path.expanduser(DEFAULT_KUBECONFIG)
    if kubeconfig:
        files, source = kubeconfig, "--kubeconfig"
        if not os.path.exists(kubeconfig):
            raise errors.NasopError(
                f"--kubeconfig {kubeconfig}: no such file", hint="give the path of a kubeconfig"
            )
    elif os.environ.get("KUBECONFIG"):
        files, source = os.environ["KUBECONFIG"], "$KUBECONFIG"
    else:
        files, source = (default if os.path.exists(default) else ""), "kubeconfig"
    if files:
        try:
            config.load_kube_config(
                config_file=files,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        except (ConfigException, OSError, ValueError) as e:
            raise errors.NasopError(
                f"cannot use the {source} {files}: {e}",
                hint="`kubectl config get-contexts` lists its contexts"
                if context
                else "check it with `kubectl config view`",
            ) from None
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise errors.NasopError(
                f"--context {context}: there is no kubeconfig here, only the in-cluster account",
                hint="pass --kubeconfig FILE, or leave --context out",
            )
        config.load_incluster_config(client_configuration=cfg)
    else:
        raise errors.NasopError(
            "no kubeconfig: $KUBECONFIG is unset, ~/.kube/config does not exist, and this is "
            "not a pod",
            hint="pass --kubeconfig FILE, or set KUBECONFIG, as for kubectl",
        )
    return client.ApiClient(cfg)


# ----------------------------------------------------------------------------- errors


def _forbidden(ref: ExperimentRef, resource: str, detail: str) -> errors.NasopError:
    role = "nasop-reader"
    return errors.NasopError(
        f"forbidden: reading {ref} needs `get` on {resource} in namespace {ref.namespace} "
        f"({detail})",
        hint=f"ask for a Role that grants it, e.g. `kubectl create role {role} -n "
        f"{ref.namespace} --verb=get --resource=nasexperiments.nasop.dev,configmaps` and "
        f"`kubectl create rolebinding {role} -n {ref.namespace} --role={role} --user=YOU`",
    )


def _status(e: Any) -> dict[str, Any]:
    """The API server's Status body of an ApiException ({} when it has none)."""
    import json

    try:
        body = json.loads(e.body)
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _details(e: Any) -> dict[str, Any]:
    """A 404's details: the object's name when the resource exists, empty when it does not."""
    return dict(_status(e).get("details") or {})


def _message(e: Any) -> str:
    """The API server's own sentence (from its Status body), else the HTTP reason."""
    return str(_status(e).get("message") or e.reason)


def _api_error(e: Any, ref: ExperimentRef, resource: str, server: str) -> errors.NasopError:
    """An ApiException (or a urllib3 error: no answer at all) as an error that names the fix."""
    from kubernetes.client.rest import ApiException

    if not isinstance(e, ApiException):
        return unreachable(server, e)
    if e.status == 403:
        return _forbidden(ref, resource, _message(e))
    if e.status == 401:
        return errors.NasopError(
            f"the API server at {server} did not accept the kubeconfig's credentials "
            f"({_message(e)})",
            hint="log in again (the token may have expired); `kubectl get nasx -n "
            f"{ref.namespace}` fails the same way until then",
        )
    return errors.NasopError(
        f"reading {resource} of {ref} failed: HTTP {e.status} {_message(e)}",
        hint=f"retry; `kubectl get nasx -n {ref.namespace}` shows whether the server answers",
    )


def unreachable(server: str, e: BaseException) -> errors.NasopError:
    reason = str(getattr(e, "reason", None) or e)
    reason = reason.split(">: ", 1)[-1]  # urllib3 puts "<...HTTPConnection object at 0x..>" first
    return errors.NasopError(
        f"cannot reach the Kubernetes API server at {server}: {reason}",
        hint="check the kubeconfig's server and context (`kubectl config current-context`), "
        "and that the cluster is up",
    )


# ----------------------------------------------------------------------------- reading


def read_experiment(api: Any, ref: ExperimentRef) -> dict[str, Any]:
    """The NASExperiment object, or an error that says why not (404: which of the two)."""
    import urllib3
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    server = api.configuration.host
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            spec.GROUP,
            spec.VERSION,
            ref.namespace,
            spec.PLURAL,
            ref.name,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as e:
        if e.status == 404 and not _details(e).get("name"):
            raise errors.NasopError(
                f"the API server at {server} does not know NASExperiments "
                f"({spec.PLURAL}.{spec.GROUP}): the CRD is not installed",
                hint="install it (`kubectl apply -f crds/`), or pick the cluster nasop runs "
                "in with --context",
            ) from None
        if e.status == 404:
            raise errors.NasopError(
                f"NASExperiment {ref} not found",
                hint=f"`kubectl get nasx -n {ref.namespace}` lists the experiments there; "
                "check the namespace, the name and the context (--context)",
            ) from None
        raise _api_error(e, ref, f"{spec.PLURAL}.{spec.GROUP}", server) from None
    except urllib3.exceptions.HTTPError as e:
        raise unreachable(server, e) from None
    return obj


def manifest_of(ref: ExperimentRef, obj: dict[str, Any]) -> spec.NASExperiment:
    """The object's spec, validated as the operator validates it."""
    data = {k: obj.get(k) for k in ("apiVersion", "kind", "spec")}
    data["metadata"] = {"name": obj["metadata"]["name"]}
    try:
        return spec.parse_manifest(data)
    except errors.SpecError as e:
        raise errors.SpecError(
            f"NASExperiment {ref} is invalid, so the operator runs no search for it: {e.message}",
            hint=f"fix its spec (`kubectl edit nasx {ref.name} -n {ref.namespace}`); "
            "`kubectl describe` shows the same reason",
        ) from None


def open_search(
    api: Any, ref: ExperimentRef, manifest: spec.NASExperiment | None = None
) -> tuple[spec.NASExperiment, Search]:
    """The experiment's search as the operator saved it last, opened read-only.

    Args:
        api: a client (`api_client`).
        ref: the experiment.
        manifest: the experiment's spec, when `read_experiment` and `manifest_of` have read it.

    Raises:
        NasopError: with the fix, when the object or its state cannot be read.
    """
    import urllib3

    from nasop.engine.search import Search
    from nasop.state import configmap
    from nasop.state.readonly import ReadOnlyStore
    from nasop.trials import cluster, registry
    from nasop.trials.runner import TorchXTrialRunner

    manifest = manifest or manifest_of(ref, read_experiment(api, ref))
    server = api.configuration.host
    store = configmap.ConfigMapStore(
        api, ref.namespace, registry=registry.bundle(), request_timeout=REQUEST_TIMEOUT
    )
    try:
        snapshot = store.load(name=ref.name)
    except errors.BackendUnavailable as e:
        raise _api_error(e.__cause__, ref, "configmaps", server) from None
    except urllib3.exceptions.HTTPError as e:
        raise unreachable(server, e) from None
    if snapshot is None:
        raise errors.NasopError(
            f"the operator has not saved state for {ref} yet "
            f"(no ConfigMap {configmap.configmap_name(ref.name)} in namespace {ref.namespace})",
            hint=f"is the operator running and watching namespace {ref.namespace}? "
            f"`kubectl get nasx {ref.name} -n {ref.namespace}` shows its phase, and "
            "its status.conditions say why it has not started",
        )
    template = manifest.spec.trial
    runner = TorchXTrialRunner(
        scheduler=cluster.kind_of(template).scheduler,
        template=template.dump(),
        log_root=UNUSED_LOG_ROOT,
        experiment_name=ref.name,
        scheduler_cfg=cluster.scheduler_cfg(template, ref.namespace),
    )
    return manifest, Search.open(manifest.spec, ref.name, runner, ReadOnlyStore(snapshot))


__all__ = [
    "DEFAULT_KUBECONFIG",
    "REQUEST_TIMEOUT",
    "ExperimentRef",
    "api_client",
    "manifest_of",
    "open_search",
    "read_experiment",
    "unreachable",
]
