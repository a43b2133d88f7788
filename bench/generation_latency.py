"""Seconds per generated trial on the tutorial's search space, with a trainer-like load beside it.

Two configurations, measured in the same run, interleaved point by point:
- Ax default: Ax's default strategy (`choose_generation_strategy` with a default
  `GenerationStrategyDispatchStruct`) in a process with torch's default thread count.
- nasop: the strategy `nasop run` builds from examples/mnist-tutorial.yaml
  (`nasop.engine.strategy.strategy_from_spec`) with one torch thread, as nasop's Search sets.
- nasop, known size (only with --configs ...,nasop_known): the same manifest with num_params
  stated as its expression (`KNOWN_SIZE`, the MLP's exact count), so the acquisition computes
  it instead of modelling it (`nasop.generators.known`).

At each point (10, 30, 48, 60, 100 completed trials) both start from the same history: Sobol
points of the tutorial's space scored by a smooth stand-in for the MLP (`tutorial_outcome`:
accuracy from width, epochs, learning rate, dropout; the exact parameter count). Then `--reps`
times: one `gen()` of one trial (the steady state of a search running 4 at a time: one trial
finishes, one is proposed), timed; its result is attached and it is completed, so each
generation refits on one more trial, as in a real search. Only model-based generations are
timed (Ax's default proposes the center point first; that one is completed untimed).

Beside it runs one CPU-bound process: a one-thread torch matmul loop, the load of one
`nasop_trainer` trial (its default is one torch thread) on these 2-core machines.

Usage (from the repo root): python bench/generation_latency.py [--reps 5] [--points 10,30,48,60,100]
[--no-load] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _problems

POINTS = (10, 30, 48, 60, 100)
CONFIGS = ("ax_default", "nasop")
#: the tutorial MLP's parameter count (`_problems.tutorial_outcome`) as a manifest expression
KNOWN_SIZE = (
    "784*hidden_size_1 + hidden_size_1 + hidden_size_1*hidden_size_2 + hidden_size_2"
    " + hidden_size_2*10 + 10"
)
TARGET_AT, TARGET_S = 48, 1.0
DEFAULT_THREADS = torch.get_num_threads()
LOAD = (
    "import torch\n"
    "torch.set_num_threads(1)\n"
    "a = torch.randn(384, 384)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


def history(n: int) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """n Sobol points of the tutorial space with synthetic outcomes (the same for every config)."""
    from nasop import spec
    from nasop.engine import strategy
    from nasop.engine.experiment import experiment_from_spec

    s = _problems.tutorial_spec()
    s = s.model_copy(
        update={
            "optimizer": s.optimizer.model_copy(update={"method": spec.Method.SOBOL, "seed": 7})
        }
    )
    loop = _problems.AxLoop(
        experiment_from_spec(s, "history", None), strategy.strategy_from_spec(s)
    )
    rng = np.random.default_rng(0)
    out = []
    while len(out) < n:
        for t in loop.propose(min(10, n - len(out))):
            out.append((dict(t.arm.parameters), _problems.tutorial_outcome(t.arm.parameters, rng)))
    return out


def make_loop(config: str, past: list[tuple[dict[str, Any], dict[str, float]]]) -> _problems.AxLoop:
    from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
    from ax.api.utils.structs import GenerationStrategyDispatchStruct

    from nasop.engine import search, strategy
    from nasop.engine.experiment import experiment_from_spec

    s = _problems.tutorial_spec()
    if config == "nasop_known":
        objectives = [
            o.model_copy(update={"expression": KNOWN_SIZE}) if o.metric == "num_params" else o
            for o in s.objectives
        ]
        s = s.model_copy(update={"objectives": objectives})
    exp = experiment_from_spec(s, f"latency-{config}", None)
    if config == "ax_default":
        torch.set_num_threads(DEFAULT_THREADS)
        gs = choose_generation_strategy(
            GenerationStrategyDispatchStruct(initialization_random_seed=0)
        )
    else:
        search.configure_torch()
        gs = strategy.strategy_from_spec(s)
    loop = _problems.AxLoop(exp, gs)
    for params, metrics in past:
        loop.add_completed(params, metrics)
    return loop


def measure(
    config: str,
    past: list[tuple[dict[str, Any], dict[str, float]]],
    reps: int,
    rng: np.random.Generator,
) -> list[float]:
    """Seconds of each model-based one-trial generation, reps of them."""
    loop = make_loop(config, past)
    seconds: list[float] = []
    while len(seconds) < reps:
        t0 = time.perf_counter()
        (trial,) = loop.propose(1)
        dt = time.perf_counter() - t0
        node = trial.generator_runs[0]._generation_node_name
        if node == "MBM":
            seconds.append(dt)
        loop.complete(trial, _problems.tutorial_outcome(trial.arm.parameters, rng))
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed generations per point and config")
    ap.add_argument("--points", default=",".join(map(str, POINTS)))
    ap.add_argument("--no-load", action="store_true", help="no CPU-bound process beside it")
    ap.add_argument("--quick", action="store_true", help="points 10,48, 3 reps")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="ax_default,nasop,nasop_known")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.reps = "10,48", 3
    points = [int(p) for p in args.points.split(",")]
    logging.getLogger("ax").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    configs = tuple(c for c in args.configs.split(",") if c)
    past = history(max(points))
    measure("nasop", past[:10], 1, np.random.default_rng(1))  # warm-up: imports, first-call costs

    load = None if args.no_load else subprocess.Popen([sys.executable, "-c", LOAD])
    results: dict[tuple[str, int], list[float]] = {}
    try:
        time.sleep(0 if load is None else 2.0)
        for n in points:
            for c in configs:
                results[c, n] = measure(c, past[:n], args.reps, np.random.default_rng(n))
                print(
                    f"  [{n} completed] {c:<10} " + " ".join(f"{s:.2f}" for s in results[c, n]),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if load is not None:
            load.kill()
            load.wait()

    beside = "none" if load is None else "one 1-thread torch matmul loop"
    print(
        f"generation latency: seconds per generated trial (p50 of {args.reps}), tutorial search "
        f"space, load beside: {beside}, {DEFAULT_THREADS} default torch threads"
    )
    print("| completed trials | " + " | ".join(f"{c} p50 (s)" for c in configs) + " |")
    print("|-----------------:|" + "|".join("-" * (len(c) + 10) + ":" for c in configs) + "|")
    for n in points:
        cells = [f"{statistics.median(results[c, n]):>{len(c) + 8}.2f}" for c in configs]
        print(f"| {n:>16} | " + " | ".join(cells) + " |")
    if TARGET_AT in points and "nasop" in configs:
        p50 = statistics.median(results["nasop", TARGET_AT])
        print(
            f"target nasop p50 <= {TARGET_S:.1f} s at {TARGET_AT} trials: {p50:.2f} s "
            f"{'MET' if p50 <= TARGET_S else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
