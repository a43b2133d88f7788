"""Helpers shared by the operator scenarios (and bench/operator_scale.py): manifests that run
the fake trainer, and pollers that wait for a state of the cluster with a deadline."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import volcano

from stubs import FAKE_TRAINER, manifest

EXP = "nasop.dev/v1alpha1/nasexperiments"
JOBS = "batch.volcano.sh/v1alpha1/jobs"
CONFIGMAPS = "v1/configmaps"
HANDLERS = ["nasop.controller.handlers"]
#: `@pytest.mark.rbac_scopes(*RBAC_BOTH)`: a scenario run as each release's ServiceAccount (the
#: chart's cluster-wide RBAC, watching all namespaces, and its Role in `default` only). Most
#: scenarios run namespaced only; the few that run both are together every call the operator
#: makes (tests/packaging/test_rbac.py checks that the cluster-mode runs cover the namespaced ones)
RBAC_BOTH = ("cluster", "namespaced")


def resource(tmp_path: Any, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A NASExperiment that runs the fake trainer, its TensorBoard files under `tmp_path`/logs.

    Metrics travel through the trial pods' logs and pack members stop through a ConfigMap: no
    claim."""
    m = manifest(name, **spec)
    m["metadata"]["namespace"] = namespace
    trial = m["spec"]["trial"]
    trial["command"] = [sys.executable, FAKE_TRAINER]
    trial["logs"] = {"mountPath": str(tmp_path / "logs")}
    return m


async def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy; return that. Fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_phase(
    cluster: Any, name: str, phases: set[str], timeout: float = 150.0, namespace: str = "default"
) -> dict[str, Any]:
    def phase_reached() -> dict[str, Any] | None:
        obj = cluster.get_object(EXP, namespace, name)
        return obj if ((obj or {}).get("status") or {}).get("phase") in phases else None

    try:
        return await wait_for(phase_reached, f"{name} in {phases}", timeout, 0.1)
    except AssertionError:
        obj = cluster.get_object(EXP, namespace, name) or {}
        raise AssertionError(f"{name} never reached {phases}: {obj.get('status')}") from None


async def run_to(
    cluster: Any,
    run_operator: Any,
    res: dict[str, Any],
    phases: set[str],
    outcome: Any = None,
    completing: bool = False,
) -> dict[str, Any]:
    """Play Volcano (default: run each job's command), start the operator, apply one
    experiment and wait until it reaches one of `phases`."""
    with volcano.VolcanoPlayer(cluster, outcome or volcano.run_command(), completing=completing):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, res)
        return await wait_phase(cluster, res["metadata"]["name"], phases)


class ConditionTrail:
    """Polls an experiment in the background and keeps each distinct set of its conditions, as
    {type: (status, reason)}, in the order seen; `last` is the latest object seen."""

    def __init__(self, cluster: Any, name: str, namespace: str = "default") -> None:
        self.cluster, self.name, self.namespace = cluster, name, namespace
        self.seen: list[dict[str, tuple[str, str]]] = []
        self.last: dict[str, Any] | None = None
        self._task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> ConditionTrail:
        self._task = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.record()  # the final state, even if it came between two polls

    def record(self) -> None:
        """Read the experiment now (tests call this where a short-lived state must be seen)."""
        obj = self.cluster.get_object(EXP, self.namespace, self.name)
        conds = ((obj or {}).get("status") or {}).get("conditions") or []
        now = {c["type"]: (c["status"], c.get("reason", "")) for c in conds}
        if now and (not self.seen or self.seen[-1] != now):
            self.seen.append(now)
        self.last = obj or self.last

    async def _poll(self) -> None:
        while True:  # in a thread: the operator under test shares this event loop
            await asyncio.to_thread(self.record)
            await asyncio.sleep(0.25)

    def of(self, type_: str) -> list[tuple[str, str]]:
        """The distinct (status, reason) values of one condition type, in order."""
        out: list[tuple[str, str]] = []
        for s in self.seen:
            if type_ in s and (not out or out[-1] != s[type_]):
                out.append(s[type_])
        return out


async def crash_and_restart(run_operator: Callable[..., Any], crashes: int) -> None:
    """Start the operator and kill it `crashes` times, each later in the search (a crash: no
    graceful shutdown), then leave one running."""
    for kill in range(crashes):
        handle = await run_operator(modules=HANDLERS, watching=[EXP])
        await asyncio.sleep(1.0 + 0.7 * kill)
        await handle.cancel()
    await run_operator(modules=HANDLERS, watching=[EXP])


def assert_kstatus(obj: dict[str, Any]) -> None:
    """observedGeneration on the status and on every condition; the four stable types."""
    st, gen = obj["status"], obj["metadata"]["generation"]
    assert st["observedGeneration"] == gen, st
    conds = st["conditions"]
    assert [c["type"] for c in conds] == ["Ready", "Reconciling", "Stalled", "SpecAccepted"], conds
    assert all(c["observedGeneration"] == gen and c["lastTransitionTime"] for c in conds), conds


def jobs_of(cluster: Any, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    return [
        j
        for j in cluster.list_objects(JOBS, namespace)
        if j["metadata"].get("labels", {}).get("nasop.dev/experiment") == name
    ]


def trial_indexes(cluster: Any, name: str, namespace: str = "default") -> list[int]:
    """The trial index of every job of the experiment, sorted (duplicates kept)."""
    return sorted(
        int(j["metadata"]["labels"]["nasop.dev/trial"]) for j in jobs_of(cluster, name, namespace)
    )


def job_phase(job: dict[str, Any]) -> str | None:
    return ((job.get("status") or {}).get("state") or {}).get("phase")


def events(
    cluster: Any, reason: str, name: str | None = None, namespace: str = "default"
) -> list[dict[str, Any]]:
    return [
        e
        for e in cluster.list_objects("v1/events", namespace)
        if e.get("reason") == reason
        and (name is None or (e.get("involvedObject") or {}).get("name") == name)
    ]


DECLARED = ("val_acc", "num_params")  # the fake trainer's objectives: what Ax records


def printed_points(log: str, member: int | None = None) -> dict[tuple[str, int], float]:
    """The NASOP1 points of declared metrics a trial printed (of one pack member, if given):
    (metric, step) -> value; a point printed twice fails."""
    out: dict[tuple[str, int], float] = {}
    for line in log.splitlines():
        if not line.startswith("NASOP1 "):
            continue
        point = json.loads(line[len("NASOP1 ") :])
        if point.get("m") != member:
            continue
        for metric, value in (point.get("v") or {}).items():
            if metric not in DECLARED:
                continue
            key = (metric, int(point["step"]))
            assert key not in out, f"printed {key} twice"
            out[key] = value
    return out


def saved_experiment(cluster: Any, name: str, namespace: str = "default") -> Any:
    """The Ax experiment as the operator saved it (its state ConfigMaps), read as the admin."""
    import kubernetes.config

    from nasop.state.configmap import ConfigMapStore
    from nasop.trials import registry

    api = kubernetes.config.new_client_from_config_dict(cluster.plane.admin_kubeconfig())
    try:
        snapshot = ConfigMapStore(api, namespace, registry=registry.bundle()).load(name=name)
    finally:
        api.close()
    assert snapshot is not None, f"no saved state of {name}"
    return snapshot.experiment


def recorded_points(experiment: Any) -> dict[int, list[tuple[str, int, float]]]:
    """Ax's data of each trial as (metric, step, value) rows, duplicates kept."""
    out: dict[int, list[tuple[str, int, float]]] = {}
    for row in experiment.lookup_data().full_df.itertuples():
        out.setdefault(int(row.trial_index), []).append(
            (row.metric_name, int(row.step), float(row.mean))
        )
    return out


def by_trial(
    cluster: Any, resource: str, name: str, namespace: str = "default"
) -> dict[int, dict[str, Any]]:
    """The experiment's objects of `resource` (its trials' pods or Jobs) by trial index."""
    selector = f"nasop.dev/experiment={name}"
    return {
        int(o["metadata"]["labels"]["nasop.dev/trial"]): o
        for o in cluster.list_objects(resource, namespace, label_selector=selector)
    }


class Poller:
    """Calls `sample()` every `interval` seconds in a thread while used as ``with``: for what a
    test must see while it happens (a ConfigMap key's first appearance, a lease's renewals)."""

    interval = 0.1

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.thread.join(5)

    def _poll(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError
