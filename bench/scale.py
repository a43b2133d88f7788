"""How an experiment's state grows with the search: today's single document against the split
layout (operator/nasop/state/layout.py), at 100 / 1,000 / 10,000 trials.

Each trial has 20-epoch curves on three metrics (val_acc, num_params, val_loss), built with
tests/synthetic_trials.py (no trainer runs: the trainer is not what is measured), and its
generator run is the strategy's, as in a real search. For each size N the state is prefilled
with N ended trials, saved once (the first save of the split layout writes every chunk), then
`--saves` more trials end one at a time, each followed by a save. It prints, per store:

- largest object and total: the bytes the store holds (gzipped for ConfigMaps, as stored);
- save s/trial: the mean time of those saves (Ax's own `attach_data` is not counted);
- writes/save and kB/save: objects and bytes each of those saves wrote;
- load s: a fresh store reading the state back (equality checked: the same trials, statuses,
  data rows and strategy runs; the full Ax equality is tests/state's job);
- "today": main's ConfigMap store (codec.py, kept as the reader of old states): one gzipped
  document of everything, rewritten on every save, in the same run; its save time is one save.

The ConfigMap rows run against a real API server (tests/cluster: etcd + kube-apiserver built
from Go modules) unless `--no-cluster`; the file store rows write to a temporary directory.

With `--sql-up-to N`, Ax's own SQL store (state/sql.py, SQLite) is timed too, up to N trials
(3 saves; it rewrites the experiment's rows on each save, so it is slow past a few hundred).

Run: `.venv/bin/python bench/scale.py [--sizes 100 1000 10000] [--saves 10] [--no-cluster]
[--sql-up-to 1000] [--no-today]`.

`--all` prints the whole of issue 24's table in one command, each part against its baseline from
the same run: this state table, then bench/proposal_scale.py (seconds per proposal at 48 / 200 /
1,000 / 5,000 completed trials: the whole GP up to 1,000, the subset as it was, nasop now) and
bench/operator_scale.py (50 / 200 / 500 experiments against 1). It takes hours on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import pathlib
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
sys.path.insert(0, str(ROOT / "tests"))

METRICS = ("val_acc", "num_params", "val_loss")
EPOCHS = 20
NAMESPACE = "default"


@dataclasses.dataclass
class Row:
    n: int
    store: str
    largest: int = 0
    total: int = 0
    objects: int = 0
    first_save_s: float = 0.0
    save_s: float = 0.0
    writes_per_save: float = 0.0
    bytes_per_save: float = 0.0
    load_s: float = 0.0
    note: str = ""


class Counting:
    """Counts the ConfigMap writes a store makes through the kubernetes client (and their bytes)."""

    def __init__(self, api: Any) -> None:
        self.api, self.writes, self.bytes = api, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def _count(self, body: dict[str, Any]) -> None:
        self.writes += 1
        self.bytes += sum(len(base64.b64decode(v)) for v in body["binaryData"].values())

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> Any:
        self._count(body)
        return self.api.create_namespaced_config_map(namespace, body)

    def replace_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        self._count(body)
        return self.api.replace_namespaced_config_map(name, namespace, body)


def params(rnd: random.Random) -> dict[str, Any]:
    return {
        "hidden_size_1": rnd.randint(16, 128),
        "hidden_size_2": rnd.randint(16, 128),
        "learning_rate": 10 ** rnd.uniform(-4, -2),
        "dropout": rnd.uniform(0, 0.5),
        "batch_size": rnd.choice([32, 64, 128, 256]),
        "epochs": 2,
    }


def curves(rnd: random.Random) -> dict[str, list[float]]:
    return {m: [rnd.random() for _ in range(EPOCHS)] for m in METRICS}


def prefilled(n: int, log_root: str, rnd: random.Random) -> Any:
    """A Search (no store) holding n completed trials with curves; data attached in one go (Ax's
    attach_data costs O(all rows) per call, which would make the prefill quadratic)."""
    import pandas as pd
    from ax.core.data import Data

    from stubs import manifest
    from synthetic_trials import SyntheticTrial, add_trial, data_rows, search_with_trials

    s = search_with_trials(manifest(f"scale-{n}", outcomeConstraints=["val_loss <= 10"]), log_root)
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        index = add_trial(s.experiment, SyntheticTrial(params(rnd), {}))
        trial = s.experiment.trials[index]
        s.strategy._generator_runs.append(trial.generator_run)
        s.state.reasons[index] = f"completed: val_acc={rnd.random():.4f}"
        rows += data_rows(index, trial.arm.name, curves(rnd))
    s.experiment.attach_data(Data(df=pd.DataFrame(rows)))
    return s


def end_one_trial(s: Any, rnd: random.Random) -> None:
    """One more trial runs, logs its curves and completes, as the engine records it."""
    import pandas as pd
    from ax.core.arm import Arm
    from ax.core.data import Data
    from ax.core.generator_run import GeneratorRun

    from synthetic_trials import data_rows

    gr = GeneratorRun(arms=[Arm(parameters=params(rnd))], generation_node_name="MBM")
    s.strategy._generator_runs.append(gr)
    trial = s.experiment.new_trial(generator_run=gr)
    trial.mark_running(no_runner_required=True)
    s.experiment.attach_data(
        Data(df=pd.DataFrame(data_rows(trial.index, trial.arm.name, curves(rnd))))
    )
    trial.mark_completed()
    s.state.reasons[trial.index] = f"completed: val_acc={rnd.random():.4f}"


def check_equal(back: Any, snap: Any) -> None:
    a, b = back.experiment, snap.experiment
    assert sorted(a.trials) == sorted(b.trials), "trials differ"
    assert [t.status for t in a.trials.values()] == [b.trials[i].status for i in a.trials]
    assert len(a.data._data_rows) == len(b.data._data_rows), "data rows differ"
    assert len(back.strategy._generator_runs) == len(snap.strategy._generator_runs)
    assert a._properties == b._properties, "nasop's book differs"


@contextlib.contextmanager
def api_server(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    import controlplane
    import kubernetes.config

    with controlplane.running() as plane:
        client = kubernetes.config.new_client_from_config_dict(plane.admin_kubeconfig())
        try:
            yield client
        finally:
            client.close()


def measure_today(n: int, snap: Any, api: Any) -> list[Row]:
    """Main's stores: the whole snapshot in one document on every save, gzipped in one
    ConfigMap, plain JSON in one file (the same encoding, timed once)."""
    import gzip

    from kubernetes.client.rest import ApiException

    from nasop.state import codec, configmap
    from nasop.trials import registry

    t0 = time.perf_counter()
    raw = codec.to_bytes(snap, registry.bundle())
    encoded = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = gzip.compress(raw, mtime=0)
    seconds = encoded + time.perf_counter() - t0
    file_row = Row(n, "today: one file", len(raw), len(raw), 1, encoded, encoded, 1, len(raw))
    row = Row(n, "today: one ConfigMap", len(data), len(data), 1, seconds, seconds, 1, len(data))
    if api is not None:
        from kubernetes import client

        core = client.CoreV1Api(api)
        name = f"today-{n}"
        body = {
            "metadata": {"name": name},
            "binaryData": {configmap.KEY: base64.b64encode(data).decode()},
        }
        t0 = time.perf_counter()
        try:
            core.create_namespaced_config_map(NAMESPACE, body)
            row.save_s = row.first_save_s = seconds + time.perf_counter() - t0
            core.delete_namespaced_config_map(name, NAMESPACE)
        except ApiException as e:
            row.note = f"refused by the API server: {e.status} {e.reason}"
        except Exception as e:  # a body past its request limit: the server hangs up
            row.note = f"refused by the API server: {type(e).__name__} (connection closed)"
    if len(data) > configmap.LIMIT_BYTES:
        row.note = row.note or "over LIMIT_BYTES: main fails the search (StateTooLarge)"
    return [row, file_row]


def measure_split(
    n: int, s: Any, make_store: Any, label: str, saves: int, rnd: random.Random, sizes: Any
) -> Row:
    store, count = make_store()
    s.store, s.version = store, None  # Search.save carries the core's resourceVersion on
    t0 = time.perf_counter()
    s.save()
    first = time.perf_counter() - t0
    times, writes, nbytes = [], [], []
    for _ in range(saves):
        end_one_trial(s, rnd)
        w0, b0 = count()
        t0 = time.perf_counter()
        s.save()
        times.append(time.perf_counter() - t0)
        w1, b1 = count()
        writes.append(w1 - w0)
        nbytes.append(b1 - b0)
    fresh, _ = make_store()
    t0 = time.perf_counter()
    back = fresh.load(name=s.name)
    load = time.perf_counter() - t0
    check_equal(back, s.snapshot())
    s.store = None
    objects = sizes(s.name)
    return Row(
        n,
        label,
        max(objects),
        sum(objects),
        len(objects),
        first,
        statistics.mean(times),
        statistics.mean(writes),
        statistics.mean(nbytes),
        load,
    )


def configmap_store(api: Any) -> tuple[Any, Any]:
    from nasop import spec
    from nasop.state import configmap
    from nasop.trials import registry

    def make() -> tuple[Any, Any]:
        store = configmap.ConfigMapStore(api, NAMESPACE, registry=registry.bundle())
        store.core = counter = Counting(store.core)
        return store, lambda: (counter.writes, counter.bytes)

    def sizes(name: str) -> list[int]:
        from kubernetes import client

        items = (
            client.CoreV1Api(api)
            .list_namespaced_config_map(NAMESPACE, label_selector=f"{spec.EXPERIMENT_LABEL}={name}")
            .items
        )
        return [len(base64.b64decode(i.binary_data[configmap.KEY])) for i in items]

    return make, sizes


def file_store(folder: str) -> tuple[Any, Any]:
    from nasop.state import files
    from nasop.trials import registry

    def make() -> tuple[Any, Any]:
        store = files.FileStore(folder, registry=registry.bundle())
        written = [0]
        inner = store._write

        def write(path: str, data: bytes) -> None:
            inner(path, data)
            written[0] += len(data)

        store._write = write  # type: ignore[method-assign]
        return store, lambda: (store.writes, written[0])

    def sizes(name: str) -> list[int]:
        root = pathlib.Path(folder)
        return [p.stat().st_size for p in [root / f"{name}.json", *root.glob(f"{name}.chunks/*")]]

    return make, sizes


def sql_store(folder: str) -> tuple[Any, Any]:
    """Ax's own SQL storage (state/sql.py) on SQLite: saves timed, writes not counted."""
    from nasop.state import sql
    from nasop.trials import registry

    url = f"sqlite:///{folder}/nasop.db"

    def make() -> tuple[Any, Any]:
        return sql.SQLStore(url, registry=registry.bundle()), lambda: (0, 0)

    def sizes(name: str) -> list[int]:
        return [pathlib.Path(f"{folder}/nasop.db").stat().st_size]

    return make, sizes


def table(rows: list[Row]) -> str:
    head = (
        f"{'trials':>7} {'store':<22} {'largest kB':>10} {'total kB':>9} {'objects':>7} "
        f"{'1st save s':>10} {'save s/trial':>12} {'writes/save':>11} {'kB/save':>8} "
        f"{'load s':>7}  vs today (largest, save s)"
    )
    out = [head, "-" * len(head)]
    today = {(r.n, r.store.split()[-1]): r for r in rows if r.store.startswith("today")}
    for r in rows:
        t = today.get((r.n, r.store.split()[-1]))
        ratio = (
            f"{r.largest / t.largest:.3f}x, {r.save_s / t.save_s:.3f}x"
            if t and r is not t and t.save_s
            else ""
        )
        out.append(
            f"{r.n:>7} {r.store:<22} {r.largest / 1e3:>10.1f} {r.total / 1e3:>9.1f} "
            f"{r.objects:>7} {r.first_save_s:>10.3f} {r.save_s:>12.4f} "
            f"{r.writes_per_save:>11.2f} {r.bytes_per_save / 1e3:>8.1f} {r.load_s:>7.2f}  "
            f"{ratio}{'  ' + r.note if r.note else ''}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--saves", type=int, default=10, help="trials ended (and saved) per size")
    ap.add_argument("--no-cluster", action="store_true", help="file store only, no API server")
    ap.add_argument(
        "--no-today", action="store_true", help="skip main's single document (slow past 1,000)"
    )
    ap.add_argument(
        "--sql-up-to", type=int, default=0, help="also time Ax's SQL store up to this many trials"
    )
    ap.add_argument(
        "--all", action="store_true", help="then proposals and the operator (bench's other two)"
    )
    args = ap.parse_args(argv)
    state_table(args)
    if args.all:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import operator_scale
        import proposal_scale

        print("\n## Seconds per proposal\n", flush=True)
        proposal_scale.main(
            ["--sizes", "48,200,1000,5000", "--configs", "baseline,subset,nasop", "--reps", "4"]
        )
        print("\n## The operator\n", flush=True)
        operator_scale.main(["--sizes", "1", "50", "200", "500"])
    return 0


def state_table(args: argparse.Namespace) -> None:
    """The state part: today's single document against the split layout, per store."""
    from nasop.cli import quiet_libraries

    quiet_libraries()
    warnings.filterwarnings("ignore")  # SQLAlchemy's cache-key warnings from Ax's SQL store
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="nasop-scale-") as tmp,
        api_server(not args.no_cluster) as api,
    ):
        for n in args.sizes:
            rnd = random.Random(n)
            t0 = time.perf_counter()
            s = prefilled(n, f"{tmp}/logs", rnd)
            print(f"N={n}: prefilled in {time.perf_counter() - t0:.1f} s", flush=True)
            if not args.no_today:
                rows += measure_today(n, s.snapshot(), api)
            if api is not None:
                make, sizes = configmap_store(api)
                rows.append(measure_split(n, s, make, "split: ConfigMap", args.saves, rnd, sizes))
            make, sizes = file_store(f"{tmp}/files")
            rows.append(measure_split(n, s, make, "split: file", args.saves, rnd, sizes))
            if n <= args.sql_up_to:
                pathlib.Path(f"{tmp}/sql-{n}").mkdir()
                make, sizes = sql_store(f"{tmp}/sql-{n}")
                row = measure_split(n, s, make, "Ax SQL (SQLite)", 3, rnd, sizes)
                row.note = "writes not counted (Ax's sqa_store)"
                rows.append(row)
            print(table([r for r in rows if r.n == n]), flush=True)
            s.close()
    print()
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
