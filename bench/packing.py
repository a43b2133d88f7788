"""Trial packing: trial-epochs per second of one packed process against N separate trials.

For each hidden size h (h1 = h2 = h), batch size and N, the same N trials (the tutorial's MLP,
learning rates spread over 1e-4..1e-2, dropout 0.2, `--epochs` each) run twice in this process's
run: as N separate trial processes (`python -m nasop_trainer`, forked from nasop's fork server
with Lightning preloaded, `--threads 1` each, `--cores` of them at a time; on a GPU one at a
time: one trial per GPU) and as one pack (`NASOP_PACK`, one process forked from the same
server, `--threads` = `--cores`). Both go through nasop's trial wrapper, as `nasop run` launches
them. The default, one core, gives the throughput per core, which does not depend on how many
cores a machine has or how loaded it is by others (on an oversubscribed machine torch's
intra-op threads wait on each other: a pack with two threads there can be ten times slower than
with one). Two rates are printed, with the pack's ratio to the separate trials:

- end to end: trial-epochs / wall seconds from the first launch to the last exit (start-up,
  data loading and latency timing included: what a search pays);
- training: trial-epochs / seconds in which some trial was training (the union of each
  process's spans from its first TensorBoard event, written once data and model are ready, to
  its last val_acc).

Usage (repo root, PYTHONPATH=operator:trainer):
    python bench/packing.py [--data ../shared/data/mnist.npz] [--subset 6000] [--epochs 1]
        [--sizes 16,128] [--batches 32,256] [--packs 1,4,16,64] [--cores N]
    python bench/packing.py --device cuda      # full MNIST on one GPU; under 5 minutes
On CUDA one trial per GPU runs its trials one after another, so its rate does not depend on N:
it is measured once per (h, batch) with `--gpu-lone-trials` trials and compared with every N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "trainer"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))  # searched first

from nasop.trials import forkserver_process, local_markers

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist.npz"
PRELOAD = ["lightning.pytorch", "torch.utils.tensorboard"]


def member_params(i: int, n: int, h: int, batch: int, epochs: int) -> dict[str, float | int]:
    rate = 1e-4 * 100 ** (i / max(1, n - 1))
    return {
        "hidden_size_1": h,
        "hidden_size_2": h,
        "learning_rate": rate,
        "dropout": 0.2,
        "batch_size": batch,
        "epochs": epochs,
    }


def common_args(args: argparse.Namespace, threads: int) -> list[str]:
    subset = [f"--subset={args.subset}"] if args.subset else []
    return [
        "--dataset=mnist",
        f"--data-dir={args.data}",
        *subset,
        f"--threads={threads}",
        "--latency-runs=5",
        f"--accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
    ]


def launch(
    server: forkserver_process.ForkServer, argv: list[str], log_dir: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """One process as `nasop run` starts it: the marker wrapper, forked by the server."""
    shutil.rmtree(log_dir, ignore_errors=True)  # no events of an earlier run in the spans
    log_dir.mkdir(parents=True)
    full_env = {**os.environ, **env, **server.env(), "PYTHONUNBUFFERED": "1"}
    with open(log_dir / "stderr.log", "wb") as err:
        return subprocess.Popen(
            local_markers.wrap(argv, str(log_dir)),
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def run_all(
    server: forkserver_process.ForkServer,
    jobs: list[tuple[list[str], Path, dict[str, str]]],
    at_once: int,
) -> float:
    """Runs the jobs, `at_once` at a time; the wall seconds from first launch to last exit."""
    pending, running = list(jobs), []
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < at_once:
            running.append(launch(server, *pending.pop(0)))
        for proc in [p for p in running if p.poll() is not None]:
            if proc.returncode != 0:
                raise SystemExit(f"a trial process exited {proc.returncode}: see {jobs[0][1]}")
            running.remove(proc)
        time.sleep(0.01)
    return time.perf_counter() - start


def training_spans(log_dirs: list[Path]) -> list[tuple[float, float]]:
    """Per log dir: its first event's wall time to its last val_acc's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spans = []
    for log_dir in log_dirs:
        acc = EventAccumulator(str(log_dir))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        if "val_acc" in tags and "num_params" in tags:
            spans.append(
                (
                    acc.Scalars("num_params")[0].wall_time,
                    max(e.wall_time for e in acc.Scalars("val_acc")),
                )
            )
    return spans


def union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def separate(
    server: forkserver_process.ForkServer,
    args: argparse.Namespace,
    root: Path,
    h: int,
    batch: int,
    n: int,
    at_once: int,
) -> tuple[float, float, int]:
    """N lone trials; (wall s, training s, trial-epochs)."""
    jobs = []
    for i in range(n):
        params = member_params(i, n, h, batch, args.epochs)
        argv = [
            sys.executable,
            "-m",
            "nasop_trainer",
            *common_args(args, 1),
            *(f"--{k}={v}" for k, v in params.items()),
        ]
        jobs.append((argv, root / f"t{i}", {"NASOP_LOG_DIR": str(root / f"t{i}")}))
    wall = run_all(server, jobs, at_once)
    spans = training_spans([j[1] for j in jobs])
    return wall, union_seconds(spans), n * args.epochs


def packed(
    server: forkserver_process.ForkServer,
    args: argparse.Namespace,
    root: Path,
    h: int,
    batch: int,
    n: int,
) -> tuple[float, float, int]:
    """One pack of N; (wall s, training s, trial-epochs)."""
    members = [
        {
            "trial": i,
            "params": member_params(i, n, h, batch, args.epochs),
            "logDir": str(root / f"m{i}"),
        }
        for i in range(n)
    ]
    for member in members:
        shutil.rmtree(member["logDir"], ignore_errors=True)
    argv = [sys.executable, "-m", "nasop_trainer", *common_args(args, args.cores)]
    wall = run_all(server, [(argv, root / "pack", {"NASOP_PACK": json.dumps(members)})], 1)
    spans = training_spans([Path(m["logDir"]) for m in members])
    return (
        wall,
        union_seconds([(min(a for a, _ in spans), max(b for _, b in spans))]),
        n * args.epochs,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="mnist.npz")
    ap.add_argument(
        "--subset",
        type=int,
        default=None,
        help="training samples (default 6000 on cpu, all 60000 on cuda)",
    )
    ap.add_argument("--epochs", type=int, default=1, help="epochs per trial")
    ap.add_argument("--sizes", default="16,128", help="hidden sizes h (h1 = h2 = h)")
    ap.add_argument("--batches", default="32,256")
    ap.add_argument("--packs", default="1,4,16,64", help="values of N")
    ap.add_argument(
        "--cores",
        type=int,
        default=1,
        help="cpu: lone trials at a time, and the pack's torch threads",
    )
    ap.add_argument(
        "--gpu-lone-trials",
        type=int,
        default=2,
        help="cuda: trials timed for the one-trial-per-GPU rate",
    )
    ap.add_argument("--out", default="", help="keep the log dirs here (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.subset is None:
        args.subset = 0 if args.device == "cuda" else 6000
    if not Path(args.data).exists():
        raise SystemExit(f"no MNIST at {args.data}: pass --data (an mnist.npz)")
    args.data = str(Path(args.data).resolve())
    args.sizes = [int(v) for v in args.sizes.split(",")]
    args.batches = [int(v) for v in args.batches.split(",")]
    args.packs = [int(v) for v in args.packs.split(",")]
    return args


def compare(
    server: forkserver_process.ForkServer, args: argparse.Namespace, out: Path, h: int, batch: int
) -> None:
    """One row per N: separate trials (or, on a GPU, one trial per GPU) against one pack."""
    gpu_lone = None
    if args.device == "cuda":
        lone_dir = out / f"h{h}-b{batch}-lone"
        gpu_lone = separate(server, args, lone_dir, h, batch, args.gpu_lone_trials, 1)
    for n in args.packs:
        sep_dir = out / f"h{h}-b{batch}-n{n}-sep"
        base = gpu_lone or separate(server, args, sep_dir, h, batch, n, min(n, args.cores))
        pack = packed(server, args, out / f"h{h}-b{batch}-n{n}-pack", h, batch, n)
        e2e = (base[2] / base[0], pack[2] / pack[0])
        train = (base[2] / base[1], pack[2] / pack[1])
        print(
            f"{h:4d} {batch:5d} {n:4d} | {e2e[0]:12.2f} {e2e[1]:9.2f} "
            f"{e2e[1] / e2e[0]:5.1f}x | {train[0]:14.2f} {train[1]:10.2f} "
            f"{train[1] / train[0]:5.1f}x",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="nasop-packing-"))
    if args.device == "cuda":  # the server must not initialise CUDA before it forks trials
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    server = forkserver_process.ForkServer(PRELOAD, str(out / "forkserver.log"))
    print(
        f"packing bench on {args.device}: mnist subset {args.subset or 'all'}, "
        f"{args.epochs} epoch(s) per trial, {args.cores} core(s), logs in {out}"
    )
    print(
        f"{'h':>4} {'batch':>5} {'N':>4} | {'separate e2e':>12} {'pack e2e':>9} {'ratio':>6} | "
        f"{'separate train':>14} {'pack train':>10} {'ratio':>6}   (trial-epochs/s)"
    )
    started = time.perf_counter()
    try:
        # start the server and let it finish importing Lightning before any timing
        warm_up = [sys.executable, "-m", "nasop_trainer", "--help"]
        run_all(server, [(warm_up, out / "warm-up", {})], 1)
        for h in args.sizes:
            for batch in args.batches:
                compare(server, args, out, h, batch)
    finally:
        server.close()
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
