"""Seconds per proposal as the search grows: 200 / 1,000 / 5,000 completed trials (issue 24).

Two configurations in the same process, on the same synthetic history, interleaved per size:
- baseline: nasop's strategy with the GP fitted on every completed trial (`strategy_from_spec`
  with `fit_subset` switched off: today's behaviour below the threshold, and main's at any size);
- nasop: the strategy `nasop run` builds (`strategy_from_spec`), which past
  `strategy.FIT_SUBSET_THRESHOLD` completed trials fits the GP on a bounded, seeded subset
  (`nasop.generators.subset`).

History: Sobol points of the tutorial's space (examples/mnist-tutorial.yaml) scored by
`_problems.tutorial_outcome` (the smooth stand-in for the MLP), attached in one go. Then `--reps`
times: one `gen()` of one trial, timed (the steady state of a search: one trial finishes, one is
proposed), and the trial is completed, so the next one refits on one more trial (the first
refit of a process is cold, later ones are warm-started, as in a running search). One torch
thread, as nasop's Search sets; no load beside it (the machine's own load is printed).

`--profile N` runs cProfile over one nasop proposal at N trials and prints the top functions by
cumulative time (where the time goes: GP fit, acquisition optimisation, Ax's transforms).

Usage (from the repo root): python bench/proposal_scale.py [--sizes 200,1000,5000] [--reps 2]
[--baseline-up-to 1000] [--profile 1000] [--check-identical 48]
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _problems

SIZES = (200, 1000, 5000)
TARGETS = {200: 1.0, 1000: 3.0, 5000: 10.0}


def history(n: int) -> list[dict[str, Any]]:
    """n scrambled Sobol points of the tutorial space (seeded; the same for both configs)."""
    from ax.core.search_space import SearchSpace
    from torch.quasirandom import SobolEngine

    from nasop.engine.experiment import experiment_from_spec

    exp = experiment_from_spec(_problems.tutorial_spec(), "history", None)
    space: SearchSpace = exp.search_space
    names = list(space.parameters)
    out: list[dict[str, Any]] = []
    points = SobolEngine(len(names), scramble=True, seed=7).draw(n).tolist()
    for row in points:
        p: dict[str, Any] = {}
        for name, u in zip(names, row, strict=True):
            param: Any = space.parameters[name]
            if hasattr(param, "values"):  # choice
                p[name] = param.values[min(int(u * len(param.values)), len(param.values) - 1)]
            elif param.log_scale:
                lo, hi = np.log(param.lower), np.log(param.upper)
                p[name] = param.cast(float(np.exp(lo + u * (hi - lo))))
            else:
                p[name] = param.cast(param.lower + u * (param.upper - param.lower))
            if isinstance(p[name], float) and param.parameter_type.name == "INT":
                p[name] = round(p[name])
        out.append(p)
    return out


def make_loop(config: str, past: list[dict[str, Any]]) -> _problems.AxLoop:
    import pandas as pd
    from ax.core.arm import Arm
    from ax.core.data import Data

    from nasop.engine import strategy
    from nasop.engine.experiment import experiment_from_spec

    s = _problems.tutorial_spec()
    exp = experiment_from_spec(s, f"scale-{config}", None)
    gs = strategy.strategy_from_spec(s)
    if config == "baseline":
        strategy.fit_subset(gs, None)
    elif config.startswith("nasop:"):  # another subset size, e.g. nasop:64
        size = int(config.partition(":")[2])
        strategy.fit_subset(gs, {"threshold": strategy.FIT_SUBSET_THRESHOLD, "size": size})
    rng = np.random.default_rng(0)
    rows = []
    for params in past:
        t = exp.new_trial()
        t.add_arm(Arm(parameters=params))
        t.mark_running(no_runner_required=True)
        for m, v in _problems.tutorial_outcome(params, rng).items():
            rows.append(
                {
                    "trial_index": t.index,
                    "arm_name": t.arm.name,
                    "metric_name": m,
                    "metric_signature": m,
                    "mean": float(v),
                    "sem": float("nan"),
                    "step": 0.0,
                }
            )
    exp.attach_data(Data(df=pd.DataFrame(rows)))
    for t in exp.trials.values():
        t.mark_completed()
    return _problems.AxLoop(exp, gs)


def measure(loop: _problems.AxLoop, reps: int, rng: np.random.Generator) -> list[float]:
    seconds: list[float] = []
    while len(seconds) < reps:
        t0 = time.perf_counter()
        (trial,) = loop.propose(1)
        dt = time.perf_counter() - t0
        if trial.generator_runs[0]._generation_node_name == "MBM":
            seconds.append(dt)
        loop.complete(trial, _problems.tutorial_outcome(trial.arm.parameters, rng))
    return seconds


def same_below_threshold(n: int, past: list[dict[str, Any]], reps: int) -> bool:
    """Below the threshold the subset is the identity: with torch seeded alike, nasop's and the
    baseline's proposals are the same parameters, step after step (48-trial quality unchanged
    by construction, checked here rather than assumed)."""
    import torch

    from nasop.engine import strategy

    assert n <= strategy.FIT_SUBSET_THRESHOLD, "only meaningful below the threshold"
    loops = {c: make_loop(c, past[:n]) for c in ("baseline", "nasop")}
    same = True
    for step in range(reps):
        arms = {}
        for c, loop in loops.items():
            torch.manual_seed(step)
            (trial,) = loop.propose(1)
            arms[c] = trial.arm.parameters
            loop.complete(trial, _problems.tutorial_outcome(trial.arm.parameters))
        same &= arms["baseline"] == arms["nasop"]
        print(f"  [{n + step} completed] identical proposals: {arms['baseline'] == arms['nasop']}")
    return same


def profile(n: int, past: list[dict[str, Any]], top: int = 30) -> None:
    loop = make_loop("nasop", past[:n])
    measure(loop, 1, np.random.default_rng(n))  # the first (cold) fit, not profiled
    prof = cProfile.Profile()
    prof.enable()
    measure(loop, 1, np.random.default_rng(n + 1))
    prof.disable()
    print(f"profile: one warm nasop proposal at {n} completed trials, by cumulative time")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--reps", type=int, default=2, help="timed warm proposals per size and config")
    ap.add_argument(
        "--baseline-up-to",
        type=int,
        default=1000,
        help="run the baseline (exact GP on every trial) only up to this size (it is O(n^3))",
    )
    ap.add_argument("--profile", type=int, default=0, help="profile one proposal at this size")
    ap.add_argument(
        "--configs",
        default="baseline,nasop",
        help="comma-separated: baseline, nasop, nasop:SIZE (another subset size)",
    )
    ap.add_argument(
        "--check-identical",
        type=int,
        default=0,
        help="check that nasop proposes what the baseline does at this many trials (3 steps)",
    )
    args = ap.parse_args(argv)
    logging.getLogger("ax").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    from nasop.engine import search, strategy

    search.configure_torch()  # one torch thread, as nasop's Search
    sizes = [int(s) for s in args.sizes.split(",") if s]
    past = history(max([*sizes, args.profile, args.check_identical]))
    if args.profile:
        profile(args.profile, past)
        return 0
    if args.check_identical:
        return 0 if same_below_threshold(args.check_identical, past, 3) else 1
    configs = args.configs.split(",")
    results: dict[tuple[str, int], tuple[float, list[float]]] = {}
    for n in sizes:
        for c in configs:
            if c == "baseline" and n > args.baseline_up_to:
                continue
            loop = make_loop(c, past[:n])
            t0 = time.perf_counter()
            first = measure(loop, 1, np.random.default_rng(n))[0]  # cold fit
            warm = measure(loop, args.reps, np.random.default_rng(n + 1))
            results[c, n] = (first, warm)
            del t0
            print(
                f"  [{n} completed] {c:<8} cold {first:.2f} warm "
                + " ".join(f"{s:.2f}" for s in warm),
                file=sys.stderr,
                flush=True,
            )
    load = os.getloadavg()
    print(
        f"proposal scale: seconds per proposal (warm: median of {args.reps}; cold: the first of "
        f"the process), tutorial search space, one torch thread, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; subset threshold "
        f"{strategy.FIT_SUBSET_THRESHOLD}, size {strategy.FIT_SUBSET_SIZE}"
    )
    print(
        "| completed | baseline cold | baseline warm | nasop cold | nasop warm | ratio | target |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for c in configs:
        if c.startswith("nasop:"):
            for n in sizes:
                first, warm = results[c, n]
                p50 = statistics.median(warm)
                print(f"{c} at {n}: cold {first:.2f} s, warm median {p50:.2f} s")
    for n in sizes:
        cells = []
        for c in ("baseline", "nasop"):
            if (c, n) in results:
                first, warm = results[c, n]
                cells += [f"{first:.2f} s", f"{statistics.median(warm):.2f} s"]
            else:
                cells += ["-", "-"]
        ratio = "-"
        if ("baseline", n) in results and ("nasop", n) in results:
            b = statistics.median(results["baseline", n][1])
            a = statistics.median(results["nasop", n][1])
            ratio = f"{b / a:.1f}x"
        target = ""
        if ("nasop", n) in results and n in TARGETS:
            worst = max(results["nasop", n][0], *results["nasop", n][1])
            ok = worst <= TARGETS[n]
            target = f"<= {TARGETS[n]:.0f} s {'MET' if ok else 'MISSED'} (worst {worst:.2f} s)"
        print(f"| {n} | " + " | ".join(cells) + f" | {ratio} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
