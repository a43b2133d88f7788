"""Train every early-stopped trial of recorded tutorial searches to its planned epochs, and score
each early-stopping run again with those final values: is a live loss the stops themselves (a
stopped trial would have reached the front) or the proposals made after them?

Reads folders written by `bench/tutorial_search.py --out DIR --json DIR/results.json` with
modes `none` and `es` (the trainer is deterministic for given parameters: its seed is fixed).
Usage (repo root): python bench/finish_stopped.py DIR [DIR ...] [--trials 48] [--jobs 2]
    [--data ../shared/data/mnist.npz]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tutorial_search

OBJECTIVES = ("val_acc", "num_params", "latency_ms")


def finish(params: dict[str, Any], data: str) -> dict[str, float]:
    """The trainer's final result for `params`, trained to their own epochs."""
    with tempfile.TemporaryDirectory() as logs:
        env = dict(
            os.environ,
            NASOP_PARAMS=json.dumps(params),
            NASOP_DATA_DIR=data,
            CUDA_VISIBLE_DEVICES="",
        )
        cmd = [sys.executable, "-m", "nasop_trainer", "--dataset", "mnist", "--log-dir", logs]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: float(result[k]) for k in OBJECTIVES if k in result}


def rescore(
    folder: Path, trials: int, jobs: int, data: str
) -> list[tuple[int, float, float, float]]:
    """Per seed: (seed, none's hypervolume, es's over its first `trials`, es's with its stopped
    trials finished)."""
    rows = json.loads((folder / "results.json").read_text())
    out = []
    for es in (r for r in rows if r["mode"] == "es"):
        none = next(r for r in rows if r["mode"] == "none" and r["seed"] == es["seed"])
        first = tutorial_search.first_trials(es, trials)["anytime"]
        kept = [m for _, m in first if m is not None]
        state = folder / es["name"] / "state" / "state" / f"{es['name']}.json"
        stopped = [p for i, p in tutorial_search.stopped_params(state).items() if i < trials]
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            finals = list(pool.map(lambda params: finish(params, data), stopped))
        hv_es = tutorial_search.hypervolume(kept)
        hv_all = tutorial_search.hypervolume(kept + finals)
        adds = sum(tutorial_search.hypervolume([*kept, m]) > hv_es + 1e-9 for m in finals)
        print(
            f"{folder.name} seed {es['seed']}: none {none['hypervolume']:.1f}, es {hv_es:.1f}, "
            f"es with its {len(finals)} stopped trials finished {hv_all:.1f} "
            f"({adds} of them would add hypervolume)",
            flush=True,
        )
        out.append((es["seed"], none["hypervolume"], hv_es, hv_all))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="tutorial_search.py --out folders")
    ap.add_argument("--trials", type=int, default=48, help="judge each run's first N trials")
    ap.add_argument("--jobs", type=int, default=2, help="trainers at a time")
    ap.add_argument("--data", default=str(tutorial_search.DEFAULT_DATA))
    args = ap.parse_args(argv)
    data = str(Path(args.data).resolve())
    rows = [row for f in args.folders for row in rescore(Path(f), args.trials, args.jobs, data)]
    base = statistics.mean(r[1] for r in rows)
    es = statistics.mean(r[2] for r in rows) / base - 1
    finished = statistics.mean(r[3] for r in rows) / base - 1
    print(
        f"mean hypervolume change over {len(rows)} seeds: es {es:+.2%}; es with its stopped "
        f"trials finished {finished:+.2%} (the rest of the loss is in the proposals)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
