"""Hypervolume reached after 24 and 48 trials, 4 at a time: nasop against other optimisers.

Columns (all run here, same problems, same seeds, same batch loop):
- nasop: the GenerationStrategy that `nasop run` builds from the manifest
  (`nasop.engine.strategy.strategy_from_spec`: Sobol initialTrials, then BoTorch qLogNEHVI with
  nasop's generation settings), one torch thread, driven through Ax's own API.
- Ax default: Ax's default strategy (`choose_generation_strategy` with a default
  `GenerationStrategyDispatchStruct`: center point, 5 Sobol, BoTorch with Ax's settings).
  nasop's tuning must not score lower than this. It runs with one torch thread like every
  column: the thread count changes only the time, and with two on these shared 2-core machines
  one Ax-default NAS-Bench-201 run took 324 s (bench/generation_latency.py measures the time).
- Sobol: nasop's `method: sobol`.
- nasop, Ax optimiser (only with --methods ...,nasop_ax_opt): nasop's strategy with Ax's default
  acquisition-optimiser settings instead of nasop's (`GENERATION_OPTIONS`), the ablation of the
  tuning.
- nasop, continuous (only with --methods ...,nasop_continuous): nasop's strategy with Ax's own
  acquisition optimiser (a continuous relaxation, rounded) instead of enumerating the
  acquisition over every configuration of a small discrete space (`nasop.generators.exhaustive`);
  the same on BraninCurrin, whose space is continuous.
- nasop, every cell (only with --methods ...,nasop_full): nasop's strategy with the acquisition
  evaluated on every configuration of a small discrete space, without the screen that keeps
  the best by an optimistic bound and a random sample (`exhaustive.screen`, acquisition option
  `screen: False`); the same on BraninCurrin, which never enumerates.
- nasop, categorical kernel (only with --methods ...,nasop_categorical): nasop's strategy with
  unordered choices left as categories (Ax's OneHot transform removed from the model node), so
  that Ax fits BoTorch's MixedSingleTaskGP (a categorical kernel on them) instead of a
  SingleTaskGP on one-hot features; the same on BraninCurrin, which has no choice.
- nasop, d Sobol (only with --methods ...,nasop_init_d): nasop's strategy with one Sobol
  initial trial per searched parameter (`optimizer.initialTrials`: 6 on NAS-Bench-201, 2 on
  BraninCurrin) instead of nasop's default of two per parameter (at least 5).
- nasop, known size (only with --methods ...,nasop_known): nasop's strategy with the problem's
  size objective as a known function of the parameters (`strategy.use_known_objectives`: the
  acquisition takes it exactly instead of from a GP; NAS-Bench-201's size is a lookup in the
  table, so the engine's function form, not a manifest expression). BraninCurrin has no known
  objective: there it is nasop's strategy unchanged.
- NSGA-II, TPE: Optuna's multi-objective samplers through ask/tell in batches of 4 (seeded;
  NSGA-II with population_size 16, since Optuna's default of 50 would never leave its random
  first generation within 48 trials; TPE with its defaults).

Each batch is 4 proposals, evaluated, then all 4 results told/attached before the next batch.
The score is the hypervolume above the manifest's thresholds as a fraction of the maximum (the
exact front of the whole NAS-Bench-201 table; BoTorch's max_hv for BraninCurrin).

Anytime table (problems with a cost: NAS-Bench-201's `train_time`, the trainer seconds of a cell;
BraninCurrin has none and is left out): the hypervolume fraction of the trials a run finished
within a trainer-second budget, its trials' seconds summed in trial order (trainer time, not wall
time: a method that picks cheaper cells gets more trials in the same seconds). The budgets are
the median, over every run of the table (all methods and seeds), of the trainer seconds of its
first 12, 24, 36 and 48 trials; a run whose 48 trials took fewer seconds than a budget counts all
48. Each cell also gives the mean number of trials done within the budget.

Usage (from the repo root, needs `pip install -e '.[engine,bench]'`):
    python bench/search_quality.py                 # 5 seeds, both problems (3 jobs)
    python bench/search_quality.py --quick         # 1 seed, 24 trials: a smoke run
    python bench/search_quality.py --seeds 3 --problems nb201 --methods nasop,sobol
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _problems

BATCH = 4
BUDGETS = (24, 48)
#: the anytime budgets: the median run's trainer seconds at these trial counts
ANYTIME_TRIALS = (12, 24, 36, 48)
TARGET_FRACTION = 0.97
METHODS = ("nasop", "ax_default", "sobol", "nsga2", "tpe")
LABELS = {
    "nasop": "nasop",
    "ax_default": "Ax default",
    "sobol": "Sobol",
    "nsga2": "NSGA-II",
    "tpe": "TPE",
    "nasop_ax_opt": "nasop, Ax optim.",
    "nasop_continuous": "nasop, continuous",
    "nasop_known": "nasop, known size",
    "nasop_full": "nasop, every cell",
    "nasop_categorical": "nasop, categorical",
    "nasop_init_d": "nasop, d Sobol",
}
#: the columns that are nasop's strategy with one change (not compared against in check_targets)
VARIANTS = (
    "nasop_ax_opt",
    "nasop_continuous",
    "nasop_known",
    "nasop_full",
    "nasop_categorical",
    "nasop_init_d",
)


def run_ax(
    problem: _problems.Problem, method: str, seed: int, budget: int
) -> list[dict[str, float]]:
    import torch
    from ax.adapter.transforms.one_hot import OneHot
    from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
    from ax.api.utils.structs import GenerationStrategyDispatchStruct

    from nasop.engine import search, strategy
    from nasop.engine.experiment import experiment_from_spec

    s = problem.spec(seed=seed, method="sobol" if method == "sobol" else "auto")
    if method == "nasop_init_d":
        s = problem.spec(seed=seed, method="auto", initialTrials=len(s.search_space))
    exp = experiment_from_spec(s, f"{problem.name}-{method}-{seed}", None)
    search.configure_torch()
    torch.manual_seed(seed)  # BoTorch's raw samples and MC draws: reproducible runs
    if method == "ax_default":
        gs = choose_generation_strategy(
            GenerationStrategyDispatchStruct(initialization_random_seed=seed)
        )
    else:
        gs = strategy.strategy_from_spec(s)
        if method == "nasop_ax_opt":
            strategy.apply_generation_options(gs, {})
        if method == "nasop_known" and problem.known:
            strategy.use_known_objectives(gs, functions=problem.known)
        if method == "nasop_continuous":
            for g in gs.nodes_by_name[strategy.MODEL_NODE].generator_specs:
                g.generator_kwargs.pop("acquisition_class")
        if method == "nasop_full":
            for g in gs.nodes_by_name[strategy.MODEL_NODE].generator_specs:
                options = g.generator_kwargs.get("acquisition_options") or {}
                g.generator_kwargs["acquisition_options"] = {**options, "screen": False}
        if method == "nasop_categorical":
            for g in gs.nodes_by_name[strategy.MODEL_NODE].generator_specs:
                kept = [t for t in g.generator_kwargs["transforms"] if t is not OneHot]
                g.generator_kwargs["transforms"] = kept
    loop = _problems.AxLoop(exp, gs)
    results: list[dict[str, float]] = []
    while len(results) < budget:
        for t in loop.propose(min(BATCH, budget - len(results))):
            metrics = problem.evaluate(t.arm.parameters)
            loop.complete(t, metrics)
            results.append(_with_cost(problem, t.arm.parameters, metrics))
    return results


def _with_cost(
    problem: _problems.Problem, params: dict[str, Any], metrics: dict[str, float]
) -> dict[str, float]:
    """The metrics as the run keeps them: with the trial's trainer seconds if the problem has a
    cost (after the optimiser was told, so never an objective)."""
    if problem.cost is None:
        return metrics
    return {**metrics, _problems.COST: problem.cost(params)}


def _suggest(trial: Any, p: Any) -> Any:
    if p.type.value == "choice":
        return trial.suggest_categorical(p.name, list(p.values))
    if p.type.value == "int":
        return trial.suggest_int(p.name, int(p.bounds[0]), int(p.bounds[1]), log=p.log)
    return trial.suggest_float(p.name, float(p.bounds[0]), float(p.bounds[1]), log=p.log)


def run_optuna(
    problem: _problems.Problem, method: str, seed: int, budget: int
) -> list[dict[str, float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = problem.spec()
    sampler = (
        optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
        if method == "nsga2"
        else optuna.samplers.TPESampler(seed=seed)
    )
    study = optuna.create_study(directions=[o.goal.value for o in s.objectives], sampler=sampler)
    results: list[dict[str, float]] = []
    while len(results) < budget:
        batch = [study.ask() for _ in range(min(BATCH, budget - len(results)))]
        for trial in batch:
            params = {p.name: _suggest(trial, p) for p in s.search_space}
            metrics = problem.evaluate(params)
            results.append(_with_cost(problem, params, metrics))
            study.tell(trial, [metrics[o.metric] for o in s.objectives])
    return results


@functools.cache
def _problem(key: str) -> _problems.Problem:
    return _problems.PROBLEMS[key]()


def _task(key: str, method: str, seed: int, budget: int) -> tuple[list[dict[str, float]], float]:
    """One run in a worker process: the results in trial order and the seconds it took."""
    logging.getLogger("ax").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    res = RUNNERS[method](_problem(key), method, seed, budget)
    return res, time.perf_counter() - t0


RUNNERS: dict[str, Callable[..., list[dict[str, float]]]] = {
    "nasop": run_ax,
    "ax_default": run_ax,
    "sobol": run_ax,
    "nsga2": run_optuna,
    "tpe": run_optuna,
    "nasop_ax_opt": run_ax,
    "nasop_continuous": run_ax,
    "nasop_known": run_ax,
    "nasop_full": run_ax,
    "nasop_categorical": run_ax,
    "nasop_init_d": run_ax,
}


Runs = dict[tuple[str, str, int], tuple[list[dict[str, float]], float]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--seed-list", default="", help="comma-separated seeds to run instead of 0..seeds-1"
    )
    ap.add_argument("--trials", type=int, default=BUDGETS[-1])
    ap.add_argument("--problems", default=",".join(_problems.PROBLEMS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="1 seed, 24 trials")
    ap.add_argument(
        "--jobs",
        type=int,
        default=3,
        help="runs in parallel (each one process with one torch thread)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.trials = 1, 24
    args.seed_list = [int(v) for v in args.seed_list.split(",") if v] or list(range(args.seeds))
    args.methods = [m for m in args.methods.split(",") if m]
    args.problems = args.problems.split(",")
    args.budgets = [b for b in BUDGETS if b <= args.trials] or [args.trials]
    return args


def run_all(args: argparse.Namespace) -> Runs:
    """Every (problem, method, seed) run in a process pool; each printed as it lands."""
    budgets = args.budgets
    tasks = [
        (k, m, seed, max(budgets))
        for k in args.problems
        for seed in args.seed_list
        for m in args.methods
    ]
    # seed by seed (a stopped run still has whole seeds), model-based runs first within a seed
    tasks.sort(
        key=lambda t: (
            t[2],
            t[1] not in ("nasop", "ax_default", *VARIANTS),
        )
    )
    done: Runs = {}
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(_task, *t): t for t in tasks}
        for fut in concurrent.futures.as_completed(futures):
            k, m, seed, _ = futures[fut]
            done[k, m, seed] = res, dt = fut.result()
            p = _problem(k)
            print(
                f"  [{p.name} seed {seed}] {LABELS[m]:<16} "
                + "  ".join(f"{b}: {p.hv_fraction(res[:b]):.4f}" for b in budgets)
                + f"  ({dt:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return done


def fractions(
    key: str, args: argparse.Namespace, done: Runs
) -> tuple[dict[str, dict[int, list[float]]], dict[str, float]]:
    """Per method: the hypervolume fraction of each seed at each budget, and seconds per run."""
    problem = _problem(key)
    frac: dict[str, dict[int, list[float]]] = {
        m: {b: [] for b in args.budgets} for m in args.methods
    }
    secs: dict[str, float] = {m: 0.0 for m in args.methods}
    for seed in args.seed_list:
        for m in args.methods:
            res, dt = done[key, m, seed]
            secs[m] += dt / len(args.seed_list)
            for b in args.budgets:
                frac[m][b].append(problem.hv_fraction(res[:b]))
    return frac, secs


def print_table(
    key: str, methods: list[str], frac: dict[str, dict[int, list[float]]], secs: dict[str, float]
) -> None:
    problem = _problem(key)
    print(f"\n{problem.name} (max hypervolume {problem.max_hv:.4f})")
    header = f"| {'trials':>6} | " + " | ".join(f"{LABELS[m]:>16}" for m in methods) + " |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for b in next(iter(frac.values())):
        cells = [f"{np.mean(frac[m][b]):.3f} ± {np.std(frac[m][b]):.3f}" for m in methods]
        print(f"| {b:>6} | " + " | ".join(f"{c:>16}" for c in cells) + " |")
    print(f"| {'s/run':>6} | " + " | ".join(f"{secs[m]:>16.1f}" for m in methods) + " |")


def anytime_trials(res: list[dict[str, float]]) -> list[tuple[float, dict[str, float]]]:
    """A run's results as (trainer seconds, metrics) pairs in trial order."""
    return [(r[_problems.COST], r) for r in res]


def anytime_budgets(runs: list[list[tuple[float, Any]]], counts: list[int]) -> list[float]:
    """The trainer-second budgets: per trial count, the median over runs of the seconds of their
    first that many trials."""
    return [float(np.median([_problems.seconds_at(t, n) for t in runs])) for n in counts]


def anytime(
    key: str, args: argparse.Namespace, done: Runs
) -> tuple[list[tuple[int, float]], dict[str, dict[float, list[tuple[float, int]]]]] | None:
    """Per method and trainer-second budget: (hypervolume fraction, trials done) of each seed;
    None for a problem without a cost."""
    problem = _problem(key)
    if problem.cost is None:
        return None
    runs = {
        (m, seed): anytime_trials(done[key, m, seed][0])
        for m in args.methods
        for seed in args.seed_list
    }
    counts = [n for n in ANYTIME_TRIALS if n <= args.trials] or [args.trials]
    budgets = anytime_budgets(list(runs.values()), counts)
    out: dict[str, dict[float, list[tuple[float, int]]]] = {
        m: {b: [] for b in budgets} for m in args.methods
    }
    for (m, _), trials in runs.items():
        for b in budgets:
            out[m][b].append(_problems.hv_at_seconds(trials, b, problem.hv_fraction))
    return list(zip(counts, budgets, strict=True)), out


def print_anytime(
    key: str,
    methods: list[str],
    budgets: list[tuple[int, float]],
    hv: dict[str, dict[float, list[tuple[float, int]]]],
) -> None:
    problem = _problem(key)
    print(
        f"\n{problem.name}, anytime: hypervolume fraction (mean trials done) within a budget of "
        "trainer seconds summed in trial order; budget = median run's seconds at N trials"
    )
    header = (
        f"| {'trainer s':>9} | {'N':>3} | " + " | ".join(f"{LABELS[m]:>20}" for m in methods) + " |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for n, b in budgets:
        cells = []
        for m in methods:
            fr = [f for f, _ in hv[m][b]]
            k = np.mean([c for _, c in hv[m][b]])
            cells.append(f"{np.mean(fr):.3f} ± {np.std(fr):.3f} ({k:.1f})")
        print(f"| {b:>9.0f} | {n:>3} | " + " | ".join(f"{c:>20}" for c in cells) + " |")


def check_targets(key: str, methods: list[str], frac: dict[str, dict[int, list[float]]]) -> bool:
    """nasop ahead of every other column at each budget, and the NAS-Bench-201 target."""
    ok = True
    for b in frac["nasop"]:
        others = {m: float(np.mean(frac[m][b])) for m in methods if m not in ("nasop", *VARIANTS)}
        mine = float(np.mean(frac["nasop"][b]))
        behind = [LABELS[m] for m, v in others.items() if v > mine]
        verdict = "yes" if not behind else "NO, behind " + ", ".join(behind)
        print(f"  nasop ahead of every other column at {b} trials: {verdict}")
        ok &= not behind
    if key == "nb201" and BUDGETS[-1] in frac["nasop"]:
        mine = float(np.mean(frac["nasop"][BUDGETS[-1]]))
        hit = mine >= TARGET_FRACTION
        ok &= hit
        print(
            f"  target nasop >= {TARGET_FRACTION} at {BUDGETS[-1]} trials: "
            f"{mine:.3f} {'MET' if hit else 'MISSED'}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("ax").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(
        f"search quality: hypervolume / max after N trials, batches of {BATCH}, "
        f"seeds {','.join(map(str, args.seed_list))}, mean ± std"
    )
    done = run_all(args)
    ok = True
    for key in args.problems:
        frac, secs = fractions(key, args, done)
        print_table(key, args.methods, frac, secs)
        at = anytime(key, args, done)
        if at is None:
            print(f"  ({_problem(key).name} has no trainer cost: no anytime table)")
        else:
            print_anytime(key, args.methods, *at)
        if "nasop" in args.methods:
            ok &= check_targets(key, args.methods, frac)
    print(f"\nall targets met: {'yes' if ok else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
