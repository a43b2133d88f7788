"""How the operator scales with the number of experiments: reconcile latency and memory.

One real control plane (tests/cluster: etcd, kube-apiserver, kube-controller-manager built from
Go modules, with the chart installed) serves every size. For each N (default 1, 10, 50; N=1 is the
baseline measured in the same run) this starts a real `nasop operator` in a subprocess, as the
chart's ServiceAccount and watching a fresh namespace, and a Volcano player whose trials complete
instantly (the player writes the trial's ``NASOP1`` lines as its pod's log itself, then marks
the job Completed). It creates N experiments of `--trials` Sobol trials each and waits until all are
Succeeded. It prints:

- start latency: experiment created -> first status written by the operator (p50/p99);
- reconcile latency: a trial's job written Completed by "Volcano" -> the experiment's
  status.trials.completed counting it (p50/p99 over all trials);
- total: first create -> last experiment Succeeded;
- operator RSS per experiment: (RSS with N finished experiments - RSS of the idle operator) / N,
  read from /proc of the operator process (finished experiments stay watched, so this is what
  each one keeps);
- the operator's API requests (through the bench's proxy) per second of the run, by kind;
- each number's ratio to the N=1 baseline.

Run: `.venv/bin/python bench/operator_scale.py [--sizes 1 10 50] [--trials 2] [--tick 0.5]`.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import IO, Any

import yaml

# searched in this order: tests/operator, tests, tests/cluster
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "cluster"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "operator"))

import controlplane
import install
import volcano
from objects import Cluster, collection_path
from proxy import FaultProxy
from scenario import EXP, resource


def write_scalars(job: dict[str, Any]) -> volcano.JobOutcome:
    """An instantly completing trial: the contract's ``NASOP1`` lines (docs/contract.md) as its
    pod's log, written in-process (no trainer process)."""
    from nasop import results

    task = job["spec"]["tasks"][0]
    env = {
        e["name"]: e.get("value", "")
        for e in task["template"]["spec"]["containers"][0].get("env") or []
    }
    p = json.loads(env.get("NASOP_PARAMS") or "{}")
    h1, h2 = float(p.get("hidden_size_1", 32)), float(p.get("hidden_size_2", 32))
    lr = float(p.get("learning_rate", 1e-3))
    points = [(0, {"num_params": 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10})]
    acc = 1 - 0.6 / math.sqrt(1 + h1 * h2 / 64) - 0.05 * abs(math.log10(lr) + 2.5)
    points += [
        (epoch, {"val_acc": acc * (1 - 0.5 ** (epoch + 1))})
        for epoch in range(int(p.get("epochs", 2)))
    ]
    text = "".join(
        results.format_point(seq, step, v) + "\n" for seq, (step, v) in enumerate(points)
    )
    return volcano.JobOutcome("Completed", exit_codes={task["name"]: 0}, logs={task["name"]: text})


class TimedPlayer(volcano.VolcanoPlayer):
    """Records when each job's final status was written: {(experiment, trial): monotonic s}.

    It finds new jobs through one watch, not by listing every job every `poll_interval` as the
    tests' player does: at 200 experiments x 2 jobs that list loaded the API server in
    proportion to N, and one list that timed out ended the player's scan for good (the run
    stalled with 64 jobs never played). A failed list or watch is retried here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finished: dict[tuple[str, int], float] = {}
        self.scan_errors = 0

    def _scan_forever(self) -> None:
        plane = self.cluster.plane
        path = collection_path(volcano.JOBS, self.namespace)
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = plane.request("GET", path)
                    version = listed["metadata"]["resourceVersion"]
                    live = {job["metadata"]["uid"] for job in listed["items"]}
                    for uid, cancelled in self._seen.items():
                        if uid not in live:
                            cancelled.set()
                    for job in listed["items"]:
                        self._consider(job)
                url = (
                    f"{plane.url}{path}?watch=1&resourceVersion={version}"
                    "&allowWatchBookmarks=true&timeoutSeconds=5"
                )
                headers = {"Authorization": f"Bearer {plane.token}"}
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, context=plane.ssl_context(), timeout=30) as resp:
                    for line in resp:
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":  # 410 Gone: list again
                            version = None
                            break
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] == "ADDED":
                            self._consider(obj)
                        elif event["type"] == "DELETED" and obj["metadata"]["uid"] in self._seen:
                            self._seen[obj["metadata"]["uid"]].set()
                        if self._stop.is_set():
                            return
            except Exception:  # the server is busy: list again
                self.scan_errors += 1
                version = None
                self._stop.wait(0.5)

    def _consider(self, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        phase = ((job.get("status") or {}).get("state") or {}).get("phase")
        if uid in self._seen or phase in volcano.TERMINAL:
            return
        self._seen[uid] = threading.Event()
        worker = threading.Thread(
            target=self._play, args=(job, self._seen[uid]), name="volcano-play", daemon=True
        )
        self._workers.append(worker)
        worker.start()

    def _set_status(self, job: Any, phase: str, counts: Any, message: str = "") -> None:
        super()._set_status(job, phase, counts, message)
        if phase in volcano.TERMINAL:
            labels = job["metadata"]["labels"]
            key = (labels["nasop.dev/experiment"], int(labels["nasop.dev/trial"]))
            self.finished[key] = time.monotonic()


def call_kind(method: str, path_qs: str) -> str:
    """An operator request as `VERB resource[/sub] [list|watch]`, e.g. `GET pods list`."""
    path, _, query = path_qs.partition("?")
    parts = [p for p in path.split("/") if p]
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        rest = parts[parts.index("namespaces") + 2 :]
    else:  # cluster-wide: /api/v1/pods, /apis/g/v/plural[/name]
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not rest:
        return f"{method} {path}"
    kind = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if len(rest) == 1:
        kind += " watch" if "watch=" in query else " list"
    return f"{method} {kind}"


def call_counts(calls: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = call_kind(call.method, call.path)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def start_operator(
    kubeconfig: pathlib.Path,
    ns: str,
    tick: float,
    log: IO[str],
    source: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`nasop operator` in a subprocess, watching `ns` through `kubeconfig` (the nasop package
    under `source`, e.g. another checkout's `operator/`, when given; `extra_env` on top)."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NASOP_TICK_SECONDS": str(tick)}
    env.update(extra_env or {})
    if source:
        env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
    env.pop("NASOP_PEERING", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from nasop.cli import main; sys.exit(main())",
            "operator",
            "--namespace",
            ns,
            f"--liveness-port={free_port()}",
            f"--metrics-port={free_port()}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until_watching(proxy: FaultProxy, proc: subprocess.Popen[bytes], log: IO[str]) -> None:
    deadline = time.monotonic() + 300  # importing Ax takes minutes on a loaded machine
    while not proxy.active_watches(EXP):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the operator did not start; see {log.name}")
        time.sleep(0.05)
    time.sleep(1.0)  # settle: the idle operator, everything imported


def create_experiments(
    cluster: Cluster, workdir: pathlib.Path, ns: str, names: list[str], trials: int
) -> dict[str, float]:
    """Create every experiment at once; when each was created (monotonic s)."""
    created: dict[str, float] = {}
    for name in names:
        cluster.create_object(
            EXP,
            resource(
                workdir,
                name,
                namespace=ns,
                budget={"maxTrials": trials, "parallelism": trials, "maxFailedTrials": 0},
                optimizer={"method": "sobol", "seed": 0},
            ),
        )
        created[name] = time.monotonic()
    return created


class Observed:
    """What polling the experiments' statuses saw, and when (monotonic s)."""

    def __init__(self) -> None:
        self.first_status: dict[str, float] = {}
        self.counted: dict[tuple[str, int], float] = {}  # (experiment, k-th completion) -> time
        self.done: dict[str, float] = {}

    def record(self, name: str, status: dict[str, Any], now: float) -> None:
        if status and name not in self.first_status:
            self.first_status[name] = now
        completed = (status.get("trials") or {}).get("completed", 0)
        for k in range(1, completed + 1):
            self.counted.setdefault((name, k), now)
        if status.get("phase") in ("Succeeded", "Failed") and name not in self.done:
            self.done[name] = now
            if status["phase"] != "Succeeded":
                raise RuntimeError(f"{name}: {status.get('message')}")


def poll_until_done(
    plane: controlplane.ControlPlane,
    ns: str,
    names: list[str],
    deadline: float,
    proc: subprocess.Popen[bytes],
    log: IO[str],
    create: Callable[[], None],
) -> Observed:
    """Follow the experiments through one watch (as the admin, straight to the server): a list
    of every experiment every few ms would itself load the API server in proportion to N.

    `create` (the experiments' creation) is called once the watch's list is done: a watch
    started after the creates (runs 1-11 in docs/benchmarks.md) dated every status written
    during them at the moment of its first list, 19 s into a run of 500 on a quiet machine."""
    seen = Observed()
    errors: list[BaseException] = []
    path = collection_path(EXP, ns)
    listed_once = threading.Event()

    def follow() -> None:
        listed = plane.request("GET", path)  # what happened before the watch starts
        for obj in listed["items"]:
            seen.record(obj["metadata"]["name"], obj.get("status") or {}, time.monotonic())
        version = listed["metadata"]["resourceVersion"]
        listed_once.set()
        while len(seen.done) < len(names) and time.monotonic() < deadline:
            url = f"{plane.url}{path}?watch=1&resourceVersion={version}&timeoutSeconds=60"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {plane.token}"})
            with urllib.request.urlopen(req, context=plane.ssl_context(), timeout=90) as resp:
                for line in resp:
                    event = json.loads(line)
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        name = obj["metadata"]["name"]
                        seen.record(name, obj.get("status") or {}, time.monotonic())
                    if len(seen.done) == len(names):
                        return

    def run() -> None:
        try:
            follow()
        except BaseException as e:  # surfaced below
            errors.append(e)

    watcher = threading.Thread(target=run, daemon=True)
    watcher.start()
    while not listed_once.wait(0.1):
        if not watcher.is_alive():
            raise errors[0] if errors else RuntimeError("the experiments' watch ended")
    create()
    while watcher.is_alive():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(
                f"{len(names) - len(seen.done)} experiments unfinished; see {log.name}"
            )
        watcher.join(0.2)
    if errors:
        raise errors[0]
    return seen


def reconcile_times(
    names: list[str], finished: dict[tuple[str, int], float], seen: Observed
) -> list[tuple[float, float]]:
    """(when the job finished, its reconcile latency) for every trial."""
    return [(t, seen.counted[key] - t) for key, t in _ends(names, finished)]


def _ends(
    names: list[str], finished: dict[tuple[str, int], float]
) -> list[tuple[tuple[str, int], float]]:
    """((experiment, k), when its k-th trial to finish did), k from 1: as reconcile_times pairs
    them with the status counting k completed trials."""
    out = []
    for name in names:
        ends = sorted(t for (exp, _), t in finished.items() if exp == name)
        out += [((name, k + 1), t) for k, t in enumerate(ends)]
    return out


def split_at(times: list[tuple[float, float]], moment: float) -> tuple[list[float], list[float]]:
    """The latencies of trials that finished before `moment` (while experiments were still
    starting) and after it."""
    before = [latency for t, latency in times if t <= moment]
    after = [latency for t, latency in times if t > moment]
    return before, after


def run_size(
    plane: controlplane.ControlPlane,
    token: str,
    n: int,
    trials: int,
    tick: float,
    workdir: pathlib.Path,
    source: str | None = None,
    variant: tuple[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    ns = f"scale-{n}" + ("-base" if source else "") + (f"-{variant[0]}" if variant else "")
    install.apply(plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    proxy = FaultProxy(plane.url, plane.ssl_context())
    with proxy.running(), open(workdir / f"operator-{ns}.log", "w") as log:
        cluster = Cluster(plane, proxy)
        kubeconfig = workdir / f"kubeconfig-{ns}"
        kubeconfig.write_text(yaml.safe_dump(controlplane.kubeconfig(proxy.url, token, None, ns)))
        proc = start_operator(kubeconfig, ns, tick, log, source, variant[1] if variant else None)
        player = TimedPlayer(cluster, write_scalars, namespace=ns, poll_interval=0.05).start()
        try:
            wait_until_watching(proxy, proc, log)
            rss_idle = rss_mib(proc.pid)
            names = [f"exp-{i:03d}" for i in range(n)]
            calls0 = len(proxy.calls)
            t0 = time.monotonic()
            created: dict[str, float] = {}
            try:
                seen = poll_until_done(
                    plane,
                    ns,
                    names,
                    t0 + 120 + 10 * n,
                    proc,
                    log,
                    lambda: created.update(create_experiments(cluster, workdir, ns, names, trials)),
                )
            except RuntimeError as e:
                raise RuntimeError(
                    f"{e}; player: {len(player.results)} jobs played, scan errors "
                    f"{player.scan_errors}, errors {player.errors[:3]}"
                ) from e
            total = max(seen.done.values()) - t0
            calls = call_counts(proxy.calls[calls0:])
            rss_full = rss_mib(proc.pid)
            times = reconcile_times(names, player.finished, seen)
            reconcile = [latency for _, latency in times]
            start = [seen.first_status[name] - created[name] for name in names]
            # trials that finished while experiments were still starting, and the others
            starting, started = split_at(times, max(seen.first_status.values()))
            if os.environ.get("NASOP_SCALE_DUMP"):  # raw times, for finding where a tail is
                pathlib.Path(os.environ["NASOP_SCALE_DUMP"], f"{ns}.json").write_text(
                    json.dumps(
                        {
                            "trials": [
                                [exp, k, t - t0, seen.counted[(exp, k)] - t0]
                                for (exp, k), t in _ends(names, player.finished)
                            ],
                            "created": {e: created[e] - t0 for e in names},
                            "first_status": {e: seen.first_status[e] - t0 for e in names},
                        }
                    )
                )
        finally:
            player.stop()
            controlplane.stop_process(proc, 30)
    return {
        "n": n,
        "start_p50": pct(start, 50),
        "start_p99": pct(start, 99),
        "reconcile_p50": pct(reconcile, 50),
        "reconcile_p99": pct(reconcile, 99),
        "while_starting": [len(starting), pct(starting, 50), pct(starting, 99)],
        "all_started": [len(started), pct(started, 50), pct(started, 99)],
        "total": total,
        "rss_idle": rss_idle,
        "rss_full": rss_full,
        "rss_per_exp": (rss_full - rss_idle) / n,
        "trials": len(reconcile),
        "requests": sum(calls.values()),
        "requests_per_s": sum(calls.values()) / total,
        "load": os.getloadavg()[0],
        # writes per experiment: its state (ConfigMap PUTs) and its status (PATCHes)
        "state_writes": sum(v for k, v in calls.items() if k.startswith("PUT configmaps")) / n,
        "status_writes": sum(v for k, v in calls.items() if k.startswith("PATCH")) / n,
        "calls": calls,
    }


def print_rows(rows: list[dict[str, float]], trials: int, tick: float) -> None:
    base = rows[0]
    print(
        f"\noperator scale: {trials} instant Sobol trials per experiment, "
        f"tick {tick}s, {os.cpu_count()} CPUs; ratios vs N={base['n']}"
    )
    head = (
        f"{'N':>4} {'start p50':>10} {'start p99':>10} {'reconcile p50':>14} "
        f"{'reconcile p99':>14} {'total s':>8} {'RSS idle MiB':>13} {'RSS/exp MiB':>12} "
        f"{'requests/s':>11} {'state w/exp':>12} {'status w/exp':>13} {'load':>5}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['n']:>4} {r['start_p50']:>9.2f}s {r['start_p99']:>9.2f}s "
            f"{r['reconcile_p50']:>13.2f}s {r['reconcile_p99']:>13.2f}s {r['total']:>8.1f} "
            f"{r['rss_idle']:>13.0f} {r['rss_per_exp']:>12.1f} "
            f"{r['requests_per_s']:>11.1f} {r.get('state_writes', math.nan):>12.1f} "
            f"{r.get('status_writes', math.nan):>13.1f} {r['load']:>5.1f}"
        )
    for r in rows[1:]:
        print(
            f"N={r['n']} vs N={base['n']}: "
            f"reconcile p50 x{r['reconcile_p50'] / base['reconcile_p50']:.2f}, "
            f"p99 x{r['reconcile_p99'] / base['reconcile_p99']:.2f}, "
            f"start p50 x{r['start_p50'] / base['start_p50']:.2f}, "
            f"RSS/exp x{r['rss_per_exp'] / base['rss_per_exp']:.2f}"
        )


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """``LABEL:K=V,K=V`` -> (label, environment)."""
    label, _, pairs = text.partition(":")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    if not label or not env:
        raise SystemExit(f"--variant {text!r}: expected LABEL:K=V[,K=V]")
    return label, env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--trials", type=int, default=2, help="trials per experiment")
    ap.add_argument("--tick", type=float, default=0.5, help="NASOP_TICK_SECONDS")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run, before each N, the operator of another checkout's operator/ folder "
        "(e.g. main's) on the same control plane: its row is printed as N-base",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:K=V[,K=V]",
        help="also run, before each N, this checkout's operator with these environment "
        "variables (e.g. unbounded:NASOP_OPEN_WORKERS=0): its row is printed as N-LABEL",
    )
    args = ap.parse_args(argv)
    variants = [_variant(v) for v in args.variant]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="nasop-scale-") as tmp,
        controlplane.running(pathlib.Path(tmp), install.install_all) as plane,
    ):
        token = plane.installed["cluster"]
        for n in args.sizes:
            if args.baseline:
                base = run_size(
                    plane, token, n, args.trials, args.tick, pathlib.Path(tmp), args.baseline
                )
                print(f"N={n}-base: done in {base['total']:.1f}s; {json.dumps(base)}", flush=True)
            for variant in variants:
                other = run_size(
                    plane, token, n, args.trials, args.tick, pathlib.Path(tmp), None, variant
                )
                print(
                    f"N={n}-{variant[0]}: done in {other['total']:.1f}s; {json.dumps(other)}",
                    flush=True,
                )
            row = run_size(plane, token, n, args.trials, args.tick, pathlib.Path(tmp))
            rows.append(row)
            print(f"N={n}: done in {row['total']:.1f}s; {json.dumps(row)}", flush=True)
    print_rows(rows, args.trials, args.tick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
