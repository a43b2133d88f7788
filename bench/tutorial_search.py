"""The tutorial's 48-trial search on full MNIST, run by `nasop run`, with and without early stopping.

Both runs use examples/mnist-tutorial.yaml (Sobol then qLogNEHVI, 4 trials at a time, the real
Lightning trainer on `mnist.npz`); the second adds a percentile rule on the val_acc curve. For
each run it prints the wall time of the whole search, the trainer time (sum over trials of the
time their process ran, read from the pid/exit markers the local trial wrapper leaves), trials
completed and stopped early, and the final hypervolume w.r.t. the tutorial's thresholds
(val_acc 0.94, num_params 80000); then the early-stopping run as ratios of the baseline run.

Usage (repo root): python bench/tutorial_search.py [--data ../shared/data/mnist.npz]
    [--trials 48] [--cores 0,1] [--only none|es] [--out DIR]
`--cores` pins each search (nasop and its trials) to those CPUs with taskset (default: 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples" / "mnist-tutorial.yaml"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist.npz"
EARLY_STOPPING = {"metric": "val_acc", "percentile": 50, "minProgression": 1, "minCurves": 5}


def manifest(trials: int, early_stopping: bool) -> dict[str, Any]:
    m = yaml.safe_load(MANIFEST.read_text())
    m = copy.deepcopy(m)
    m["metadata"]["name"] = "tutorial-es" if early_stopping else "tutorial"
    m["spec"]["budget"]["maxTrials"] = trials
    m["spec"]["optimizer"]["initialTrials"] = min(9, max(1, trials // 2))
    m["spec"]["trial"]["command"] = [sys.executable, "-m", "nasop_trainer"]
    if early_stopping:
        m["spec"]["earlyStopping"] = dict(EARLY_STOPPING)
    return m


def trainer_seconds(log_root: Path) -> list[float]:
    """Per trial: from the wrapper's pid marker (trainer started) to its exit marker."""
    out = []
    for trial in sorted(log_root.glob("trial-*")):
        pid, end = trial / ".nasop" / "pid", trial / ".nasop" / "exit"
        if pid.exists() and end.exists():
            out.append(end.stat().st_mtime - pid.stat().st_mtime)
    return out


def run_one(trials: int, early_stopping: bool, data: str, cores: str, out: Path) -> dict[str, Any]:
    m = manifest(trials, early_stopping)
    name = m["metadata"]["name"]
    work = out / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    env = dict(os.environ, NASOP_DATA_DIR=data, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "nasop.cli", "run", str(path), "--state-dir", str(work / "state"),
           "--quiet"]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: nasop run exited {proc.returncode}\n{proc.stderr[-3000:]}")
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "nasop.cli", "status", str(path), "--state-dir",
         str(work / "state"), "-o", "json"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout)
    per_trial = trainer_seconds(work / "state" / "logs" / name)
    return {
        "name": name, "wall_s": wall, "trainer_s": sum(per_trial), "trials": len(per_trial),
        "completed": status["trials"]["completed"],
        "early_stopped": status["trials"].get("earlyStopped", 0),
        "failed": status["trials"]["failed"], "hypervolume": status.get("hypervolume") or 0.0,
        "pareto": status.get("paretoSize", 0), "phase": status["phase"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="mnist.npz or a torchvision dir")
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--cores", default="0,1", help="taskset CPU list per search ('' = no pin)")
    ap.add_argument("--only", choices=["none", "es"], help="run just one of the two searches")
    ap.add_argument("--out", default="", help="keep run directories here (default: temp)")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        raise SystemExit(f"no MNIST at {args.data}: pass --data (an mnist.npz)")
    out = Path(args.out or tempfile.mkdtemp(prefix="nasop-tutorial-"))
    modes = [m == "es" for m in ([args.only] if args.only else ["none", "es"])]
    rows = [run_one(args.trials, es, args.data, args.cores, out) for es in modes]
    print(f"tutorial search, {args.trials} trials, cores {args.cores or 'all'} "
          f"({os.cpu_count()} on the machine), runs in {out}")
    print(f"{'run':<12} {'wall s':>8} {'trainer s':>10} {'trials':>7} {'completed':>10} "
          f"{'stopped':>8} {'failed':>7} {'HV':>10} {'front':>6}")
    for r in rows:
        print(f"{r['name']:<12} {r['wall_s']:8.1f} {r['trainer_s']:10.1f} {r['trials']:7d} "
              f"{r['completed']:10d} {r['early_stopped']:8d} {r['failed']:7d} "
              f"{r['hypervolume']:10.1f} {r['pareto']:6d}")
    if len(rows) == 2:
        base, es = rows
        saved = 1 - es["trainer_s"] / base["trainer_s"]
        hv = es["hypervolume"] / base["hypervolume"] - 1 if base["hypervolume"] else float("nan")
        print(f"early stopping: trainer time saved {saved:.1%} (target >= 25%), "
              f"hypervolume change {hv:+.1%} (target >= -1%), wall {es['wall_s'] / base['wall_s']:.2f}x")
    for r in rows:
        print(f"{r['name']}: wall {r['wall_s'] / 60:.1f} min (target < 10 min)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
