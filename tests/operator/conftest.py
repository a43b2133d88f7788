"""Fixtures for operator tests: a real API server (session-wide) and an in-process kopf.

- ``control_plane``, ``rbac_scope`` and ``cluster`` come from tests/conftest.py.
- ``kubeconfig``: a kubeconfig for the operator (the proxy, the chart's ServiceAccount token),
  exported as ``KUBECONFIG`` for the test.
- ``run_operator``: ``await run_operator(registry_or_None, paths=..., modules=..., ...)`` starts
  kopf as an asyncio task on the test's loop, logged in as the chart's ServiceAccount through the
  proxy, and returns an :class:`OperatorHandle`; leftovers are cancelled at teardown.

This folder must not get an ``__init__.py``: the package would be named ``operator`` and shadow the
standard library. The helpers are imported as top-level modules (``import volcano``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import pathlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

from nasop.controller.settings import Settings

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(pathlib.Path(__file__).parent), str(REPO / "tests" / "cluster")]

import controlplane  # noqa: E402 - importable once tests/cluster is on sys.path (above)
from objects import Cluster  # noqa: E402 - likewise

REQUIRED_CALLS_PATH = REPO / "tests" / "packaging" / "required_api_calls.yaml"
RECORDED_CALLS_PATH = REPO / "tests" / "packaging" / "recorded_api_calls.yaml"
RECORDED_HEADER = """\
# The Kubernetes API calls the operator made in each operator scenario, as the API server's audit
# log recorded them. WRITTEN BY THE TESTS (tests/operator/conftest.py::record_api_calls) after each
# passing scenario: do not edit. tests/packaging/test_rbac.py checks that required_api_calls.yaml
# (and so the chart's RBAC) is exactly the union of these, plus the few calls it justifies as
# unrecorded.
"""


@pytest.fixture()
def kubeconfig(
    cluster: Cluster, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pathlib.Path]:
    """A kubeconfig for the operator (through the proxy, as the chart's ServiceAccount)."""
    import kubernetes.client
    import kubernetes.config.kube_config

    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(controlplane.kubeconfig(cluster.url, cluster.operator_token, None))
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # The client reads $KUBECONFIG once, at import time: point its default there too.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    # load_kube_config() (e.g. in kopf.login_via_client) replaces the client's global default.
    default = getattr(kubernetes.client.Configuration, "_default", None)
    yield path
    kubernetes.client.Configuration.set_default(default)


@pytest.fixture()
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator ticks every 0.1 s instead of 2 s."""
    monkeypatch.setenv("NASOP_TICK_SECONDS", "0.1")


# ------------------------------------------------------------------------------------ API calls


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.rbac_scopes("namespaced", ...)` (module or test; the closest wins) runs a
    scenario once as each named release's ServiceAccount (the `rbac_scope` fixture)."""
    marker = metafunc.definition.get_closest_marker("rbac_scopes")
    if marker is not None:
        metafunc.parametrize("rbac_scope", list(marker.args), indirect=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the item: fixtures read whether the test passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def recorded_calls(calls: Iterable[Any]) -> list[dict[str, Any]]:
    """The operator's calls as required_api_calls.yaml entries (without scope), sorted."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for call in calls:
        if call.resource.startswith("nonResourceURL:"):
            continue  # discovery, which the default system:discovery role grants every user
        verbs.setdefault((call.group, call.resource), set()).add(call.verb)
    return [{"group": g, "resource": r, "verbs": sorted(v)} for (g, r), v in sorted(verbs.items())]


@pytest.fixture()
def record_api_calls(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    """After a passing test: fail if the server refused any of the operator's calls (403: the
    chart does not grant it), and write the scenario's calls into recorded_api_calls.yaml."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.passed:
        return
    made = cluster.operator_calls()
    refused = sorted({(c.verb, c.group, c.resource) for c in made if c.code == 403})
    assert not refused, f"the API server refused calls the chart does not grant: {refused}"
    calls = recorded_calls(made)
    name = request.node.name
    data = yaml.safe_load(RECORDED_CALLS_PATH.read_text()) if RECORDED_CALLS_PATH.exists() else None
    scenarios = dict((data or {}).get("scenarios") or {})
    if scenarios.get(name) != calls:
        scenarios[name] = calls
        lines = [RECORDED_HEADER + "scenarios:"]
        for scenario, entries in sorted(scenarios.items()):
            lines.append(f"  {scenario}:")
            lines += [
                f"    - {yaml.safe_dump(e, default_flow_style=True, width=200).strip()}"
                for e in entries
            ]
        RECORDED_CALLS_PATH.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ kopf


def apply_test_settings(settings: Any) -> None:
    """Fast retries and reconnects: the server is local, waiting only slows the tests."""
    settings.networking.error_backoffs = [0.1, 0.2, 0.5, 1.0]
    settings.watching.reconnect_backoff = 0.05
    settings.posting.default_backoffs = [0.1, 0.2, 0.5]


def load_registry(paths: Iterable[str | pathlib.Path] = (), modules: Iterable[str] = ()) -> Any:
    """Import kopf handler files/modules into a fresh registry (re-executing imported modules)."""
    import kopf

    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        for module in modules:
            if module in sys.modules:
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
        for index, path in enumerate(paths):
            spec = importlib.util.spec_from_file_location(f"_kopf_handlers_{index}", path)
            assert spec is not None and spec.loader is not None, path
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    finally:
        kopf.set_default_registry(previous)
    return registry


@dataclasses.dataclass
class OperatorHandle:
    """A kopf operator running as a task on the test's event loop."""

    task: asyncio.Task[None]
    stop_flag: asyncio.Event
    registry: Any
    settings: Any
    cluster: Cluster

    async def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop via kopf's stop flag (kopf waits up to 5 s for its streams)."""
        self.stop_flag.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def wait_watching(self, *resources: str, timeout: float = 10.0) -> None:
        """Wait until kopf has an open watch stream on each resource
        (``'group/version/plural'``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(self.cluster.proxy.active_watches(r) for r in resources):
            if self.task.done():
                self.task.result()  # re-raise why it died
                raise RuntimeError("the operator exited")
            if loop.time() > deadline:
                raise TimeoutError(f"kopf is not watching {resources} after {timeout}s")
            await asyncio.sleep(0.02)


OperatorStarter = Callable[..., Awaitable[OperatorHandle]]


@pytest_asyncio.fixture()
async def run_operator(
    cluster: Cluster, rbac_scope: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OperatorStarter]:
    """Start kopf in-process against the API server (through the proxy): ``handle = await
    run_operator(registry, ...)``.

    Args (of the returned coroutine function):
        registry: a ``kopf.OperatorRegistry``; or None to load ``paths``/``modules`` into a new one.
        namespaces: the namespaces to serve (default ``["default"]``); or ``clusterwide=True``
            (the default when the operator has the cluster-wide release's RBAC).
        configure: ``fn(settings)`` after the test defaults (:func:`apply_test_settings`).
        login: ``"token"`` (a login handler: the proxy's URL, the ServiceAccount token) or
        ``"kubeconfig"``
            (``kopf.login_via_client``: needs the ``kubeconfig`` fixture) or None (the registry's).
        watching: resources to wait for kopf to watch before returning.
        peering: a kopf peering name: run as one of several replicas (not standalone), with
            ``priority`` and ``identity`` (the namespaced KopfPeering object must exist).
    """
    import kopf

    handles: list[OperatorHandle] = []

    async def start(
        registry: Any = None,
        *,
        paths: Iterable[str | pathlib.Path] = (),
        modules: Iterable[str] = (),
        namespaces: Iterable[str] = ("default",),
        clusterwide: bool | None = None,
        configure: Callable[[Any], None] | None = None,
        login: str | None = "token",
        watching: Iterable[str] = (),
        ready_timeout: float = 10.0,
        peering: str | None = None,
        priority: int = 0,
        identity: str | None = None,
    ) -> OperatorHandle:
        registry = registry if registry is not None else load_registry(paths, modules)
        if clusterwide is None:
            clusterwide = rbac_scope == "cluster"
        # as the chart sets it, so that nasop's settings know what kopf watches
        monkeypatch.setenv("WATCH_NAMESPACES", "" if clusterwide else ",".join(namespaces))
        if login == "token":

            @kopf.on.login(registry=registry, id="token_login")
            def _login(**_: Any) -> kopf.ConnectionInfo:
                return kopf.ConnectionInfo(
                    server=cluster.url,
                    token=cluster.operator_token,
                    default_namespace="default",
                    priority=1000,
                )
        elif login == "kubeconfig":
            kopf.on.login(registry=registry, id="kubeconfig_login")(kopf.login_via_client)
        settings = kopf.OperatorSettings()
        apply_test_settings(settings)
        if configure is not None:
            configure(settings)
        ready, stop_flag = asyncio.Event(), asyncio.Event()
        peers = (
            {"standalone": True}
            if peering is None
            else {
                "standalone": False,
                "peering_name": peering,
                "priority": priority,
                "identity": identity,
            }
        )
        task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings,
                **Settings.load().kopf_scope(),
                ready_flag=ready,
                stop_flag=stop_flag,
                **peers,
            )
        )
        handle = OperatorHandle(task, stop_flag, registry, settings, cluster)
        handles.append(handle)
        ready_waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait(
            [ready_waiter, task], timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        ready_waiter.cancel()
        if task.done():
            task.result()
            raise RuntimeError("the operator exited during startup")
        if not ready.is_set():
            raise TimeoutError(f"the operator was not ready in {ready_timeout}s")
        _restore_signals()  # kopf took SIGINT/SIGTERM: give them back to pytest and `timeout`
        if watching:
            await handle.wait_watching(*watching)
        return handle

    yield start

    for handle in handles:
        if not handle.task.done():
            await handle.cancel()
    _restore_signals()


def _restore_signals() -> None:
    """Undo kopf's ``loop.add_signal_handler`` for SIGINT/SIGTERM (it does so in the main
    thread)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
