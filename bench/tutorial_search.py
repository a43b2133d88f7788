"""The tutorial's 48-trial search on full MNIST run by `nasop run`, with and without early stopping.

Both runs use examples/mnist-tutorial.yaml (Sobol then qLogNEHVI, 4 trials at a time, the real
Lightning trainer on `mnist.npz`); the second adds a percentile rule on the val_acc curve. For
each run it prints the wall time of the whole search, the trainer time (sum over trials of the
time their process ran, read from the pid/exit markers the local trial wrapper leaves), trials
completed and stopped early, and the final hypervolume w.r.t. the tutorial's thresholds
(val_acc 0.94, num_params 80000); then the early-stopping run as ratios of the baseline run.

Usage (repo root): python bench/tutorial_search.py [--data ../shared/data/mnist.npz]
    [--trials 48] [--seeds 0] [--cores-per-run 2] [--parallel] [--modes none,es,fresh]
    [--preload MODULES] [--out DIR]
Mode `packed` runs the no-early-stopping search with `spec.trial.pack` (PACK, PACK_PARALLELISM
packs at a time) and is compared with mode `none` (wall time, hypervolume).
Both modes run `nasop run --preload lightning.pytorch,torch.utils.tensorboard` (trials forked
from a server that imported them once); mode `fresh` is the no-early-stopping run without it.
Each search (nasop and its trials) is pinned with taskset to its own `--cores-per-run` CPUs (2 by
default, the cores of the machines this project targets). On a machine with many cores,
`--parallel` runs the searches side by side, each on its own cores; otherwise one after another.
Hypervolumes differ between runs of the same configuration (which trials have finished when
BoTorch proposes depends on timing), so use several seeds to compare the two modes.

Anytime table: per mode, the hypervolume of the trials finished within a budget of trainer
seconds. A run's trials are taken in the order they ended (their exit markers), their trainer
seconds summed in that order; the hypervolume is that of the completed ones among them (as the
status counts: early-stopped and failed trials spend seconds but are not on the front), with
each trial's last logged values from the saved Ax experiment. The budgets are 25, 50, 75 and
100% of mode `none`'s mean trainer seconds (of all runs' mean without a `none` run). Packed runs
(one process for several trials) are left out.

Time to quality: per seed, the trainer seconds (summed in the order trials ended) each mode took
to reach 99% of mode `none`'s final hypervolume, as a fraction of `none`'s trainer seconds: what
early stopping saves once the seconds it frees buy more trials. `--es-trials` gives the
early-stopping modes more trials than `--trials` for this; the per-trial-count comparison then
uses their first `--trials` trials (by index).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import shutil
import signal
import statistics
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
EARLY_STOPPING = {"metric": "val_acc", "percentile": 50, "minProgression": 0, "minCurves": 5}
#: an alternative for --early-stopping: also stop a first epoch far below the 0.94 threshold
EARLY_STOPPING_ANY = {
    "combine": "any",
    "rules": [
        {"metric": "val_acc", "percentile": 50, "minProgression": 0, "minCurves": 5},
        {"metric": "val_acc", "threshold": 0.9, "minProgression": 0, "minCurves": 1},
    ],
}

#: the Pareto rule: stop a trial once another trial beats it on both objectives at the same epoch
EARLY_STOPPING_PARETO = {"metric": "val_acc", "dominatedBy": 1, "minProgression": 0, "minCurves": 5}
#: the front rule at the level bench/stopping_replay.py calibrated (epochsParameter: each trial's
#: last step is known, as in the replay)
EARLY_STOPPING_FRONT = {
    "metric": "val_acc",
    "frontProbability": 0.3,
    "minProgression": 0,
    "minCurves": 5,
    "epochsParameter": "epochs",
}

#: the gain rule at 0.25: replayed on 15 recorded runs 12.0% saved for -0.70%; live over 10 runs
#: per mode 14.0% for -2.0% (+3.2% in one set of 5, -7.2% in another: docs/benchmarks.md)
EARLY_STOPPING_GAIN = {
    "metric": "val_acc",
    "gainRatio": 0.25,
    "minProgression": 0,
    "minCurves": 5,
    "epochsParameter": "epochs",
}


#: mode `packed`: the same search with spec.trial.pack, this many packs at a time
PACK = {"maxTrials": 8, "groupBy": ["batch_size"]}
PACK_PARALLELISM = 2

#: what `nasop run --preload` imports once in its fork server (the trainer's heavy imports)
PRELOAD = "lightning.pytorch,torch.utils.tensorboard"


def manifest(
    trials: int, mode: str, seed: int, rule: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The tutorial manifest for one run; mode `es` adds the early-stopping rule."""
    m = yaml.safe_load(MANIFEST.read_text())
    m["metadata"]["name"] = f"tutorial-{mode}-s{seed}"
    m["spec"]["optimizer"]["seed"] = seed
    m["spec"]["budget"]["maxTrials"] = trials
    m["spec"]["optimizer"]["initialTrials"] = min(9, max(1, trials // 2))
    m["spec"]["trial"]["command"] = [sys.executable, "-m", "nasop_trainer"]
    if mode in ("es", "honest"):
        m["spec"]["earlyStopping"] = copy.deepcopy(rule or EARLY_STOPPING)
    if mode == "honest":  # the same rule, stopped trials modelled at the epochs they trained
        m["spec"]["earlyStopping"]["epochsParameter"] = "epochs"
    if mode == "packed":  # trials share processes: parallelism counts packs
        m["spec"]["trial"]["pack"] = copy.deepcopy(PACK)
        m["spec"]["budget"]["parallelism"] = PACK_PARALLELISM
    return m


#: the anytime budgets, as fractions of the no-early-stopping runs' mean trainer seconds
ANYTIME_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def trial_times(log_root: Path) -> dict[int, tuple[float, float]]:
    """Per trial index: (trainer seconds, end time), from the wrapper's pid and exit markers."""
    out = {}
    for trial in log_root.glob("trial-*"):
        pid, end = trial / ".nasop" / "pid", trial / ".nasop" / "exit"
        if pid.exists() and end.exists():
            stop = end.stat().st_mtime
            out[int(trial.name.split("-")[1])] = (stop - pid.stat().st_mtime, stop)
    return out


def saved_experiment(state_file: Path) -> Any:
    """The Ax experiment `nasop run` saved in `state_file`, None if there is none."""
    from nasop.state.files import FileStore
    from nasop.trials import registry

    store = FileStore(str(state_file.parent), registry=registry.bundle())
    snapshot = store.load(name=state_file.stem)
    return snapshot.experiment if snapshot else None


def trial_outcomes(state_file: Path) -> dict[int, dict[str, float] | None]:
    """Per trial index: the last logged value of each metric of a completed trial (as the ledger
    reads them), None for a trial that did not complete (early-stopped, failed)."""
    from ax.core.base_trial import TrialStatus

    exp = saved_experiment(state_file)
    if exp is None:
        return {}
    df = exp.lookup_data().full_df
    values: dict[int, dict[str, float]] = {}
    if not df.empty:
        df = df.sort_values("step") if "step" in df.columns else df
        for (idx, metric), v in df.groupby(["trial_index", "metric_name"])["mean"].last().items():
            values.setdefault(int(idx), {})[str(metric)] = float(v)
    return {
        t.index: values.get(t.index) if t.status is TrialStatus.COMPLETED else None
        for t in exp.trials.values()
    }


def anytime_trials(
    times: dict[int, tuple[float, float]], outcomes: dict[int, dict[str, float] | None]
) -> list[tuple[float, dict[str, float] | None]]:
    """(trainer seconds, final metrics or None) per trial that ran, in the order they ended."""
    return [(times[i][0], outcomes.get(i)) for i in end_order(times)]


def end_order(times: dict[int, tuple[float, float]]) -> list[int]:
    """The trial indices of `trial_times` in the order the trials ended."""
    return sorted(times, key=lambda i: (times[i][1], i))


def seconds_to_reach(
    trials: list[tuple[float, dict[str, float] | None]], target: float
) -> float | None:
    """The trainer seconds (summed in the order trials ended) at which the completed trials'
    hypervolume first reaches `target`; None if the run never reaches it."""
    total, done = 0.0, []
    for sec, metrics in trials:
        total += sec
        if metrics is not None:
            done.append(metrics)
            if hypervolume(done) >= target:
                return total
    return None


def first_trials(row: dict[str, Any], n: int) -> dict[str, Any]:
    """The row as if its run had stopped after `n` trials: trainer seconds and hypervolume of the
    trials with index < n (a run given more trials proposes its first n as a run of n would)."""
    kept = [(sec, m) for i, (sec, m) in zip(row["order"], row["anytime"]) if i < n]
    if len(kept) == len(row["anytime"]):
        return row
    done = [m for _, m in kept if m is not None]
    return {
        **row,
        "trainer_s": sum(sec for sec, _ in kept),
        "hypervolume": hypervolume(done) if done else 0.0,
        "early_stopped": sum(1 for i in row["stopped"] if i < n),
        "startup_s": sum(v[0] for i, v in row["per_trial"].items() if int(i) < n),
        "epochs": sum(v[1] for i, v in row["per_trial"].items() if int(i) < n),
        "unrun_s": sum(v[2] for i, v in row["per_trial"].items() if int(i) < n),
        "trials": len(kept),
        "anytime": kept,
        "order": [i for i in row["order"] if i < n],
    }


def _bench() -> Any:
    """bench/_problems.py, imported on first use (it imports torch and Ax)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _problems

    return _problems


def hypervolume(metrics: list[dict[str, float] | None]) -> float:
    """The tutorial's hypervolume (its thresholds, its outcome constraints) of the completed
    trials among `metrics` (None: a trial that did not complete)."""
    from nasop.engine import pareto

    s = _bench().tutorial_spec()
    obs = [pareto.Observation(i, {}, m) for i, m in enumerate(metrics) if m is not None]
    ref = {o.metric: float(o.threshold) for o in s.objectives if o.threshold is not None}
    return pareto.front(s.objectives, s.parsed_outcome_constraints, obs, reference=ref).hypervolume


def anytime_hv(
    trials: list[tuple[float, dict[str, float] | None]], seconds: float
) -> tuple[float, int]:
    """The hypervolume of a run's trials finished within `seconds` trainer seconds (summed in the
    order they ended), and how many trials ended by then."""
    return _bench().hv_at_seconds(trials, seconds, hypervolume)


def anytime_table(
    rows: list[dict[str, Any]], fractions: tuple[float, ...] = ANYTIME_FRACTIONS
) -> tuple[list[float], dict[str, dict[float, list[tuple[float, int]]]]]:
    """The budgets (fractions of mode none's mean trainer seconds) and, per mode and budget,
    (hypervolume, trials ended) of each run that has per-trial records."""
    rows = [r for r in rows if r.get("anytime")]
    base = [r["trainer_s"] for r in rows if r["mode"] == "none"] or [r["trainer_s"] for r in rows]
    budgets = [f * statistics.mean(base) for f in fractions] if base else []
    out: dict[str, dict[float, list[tuple[float, int]]]] = {}
    for r in rows:
        trials = [(float(sec), m) for sec, m in r["anytime"]]
        for b in budgets:
            out.setdefault(r["mode"], {}).setdefault(b, []).append(anytime_hv(trials, b))
    return budgets, out


def print_anytime(rows: list[dict[str, Any]]) -> None:
    budgets, hv = anytime_table(rows)
    if not budgets:
        return
    base = "mode none's" if any(r["mode"] == "none" for r in rows) else "these runs' (no mode none)"
    print(
        "anytime: hypervolume (mean trials ended) within a budget of trainer seconds, summed "
        f"in the order trials ended; budgets = 25/50/75/100% of {base} mean trainer seconds"
    )
    modes = list(hv)
    header = f"| {'trainer s':>9} | " + " | ".join(f"{m:>18}" for m in modes) + " |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for b in budgets:
        cells = []
        for m in modes:
            vals = hv[m][b]
            mean_hv = statistics.mean(v for v, _ in vals)
            mean_n = statistics.mean(n for _, n in vals)
            cells.append(f"{mean_hv:.1f} ({mean_n:.1f})")
        print(f"| {b:>9.0f} | " + " | ".join(f"{c:>18}" for c in cells) + " |")


def trainer_seconds(log_root: Path) -> list[float]:
    """Per trial: from the wrapper's pid marker (trainer started) to its exit marker."""
    out = []
    for trial in sorted([*log_root.glob("trial-*"), *log_root.glob("pack-*")]):
        pid, end = trial / ".nasop" / "pid", trial / ".nasop" / "exit"
        if pid.exists() and end.exists():
            out.append(end.stat().st_mtime - pid.stat().st_mtime)
    return out


def stopped_params(state_file: Path) -> dict[int, dict[str, Any]]:
    """The parameters of each early-stopped trial, from the saved Ax experiment."""
    from ax.core.base_trial import TrialStatus

    exp = saved_experiment(state_file)
    trials = exp.trials.values() if exp is not None else []
    return {
        t.index: dict(t.arms[0].parameters)
        for t in trials
        if t.arms and t.status is TrialStatus.EARLY_STOPPED
    }


def stopped_plans(state_file: Path) -> dict[int, int]:
    """The `epochs` parameter of each early-stopped trial."""
    return {i: int(p["epochs"]) for i, p in stopped_params(state_file).items()}


def curve_stats(
    log_root: Path, planned: dict[int, int] | None = None
) -> tuple[dict[int, float], dict[int, int], dict[int, float]]:
    """One read of each trial's TensorBoard events, three numbers per trial index from it:
    - start-up per trial: from the trainer's start (pid marker) to its first event (num_params,
      written once imports, data and model are ready); early stopping cannot save this part;
    - epochs actually trained, summed over trials (val_acc is logged once per epoch); unlike
      trainer seconds this does not depend on how loaded the machine was;
    - seconds the stopped trials would still have trained: their epochs not run (`planned`: the
      stopped trials' epochs parameter, see `stopped_plans`) times their own seconds per epoch
      (first event to last val_acc, over epochs run). An estimate inside one run, so it does
      not depend on which trials BoTorch proposed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    startup: dict[int, float] = {}
    epochs: dict[int, int] = {}
    unrun: dict[int, float] = {}
    for trial in sorted(log_root.glob("trial-*")):
        idx = int(trial.name.split("-")[1])
        pid = trial / ".nasop" / "pid"
        acc = EventAccumulator(str(trial))
        acc.Reload()
        scalars = acc.Tags().get("scalars", [])
        first = acc.Scalars("num_params")[0].wall_time if "num_params" in scalars else None
        if pid.exists() and first is not None:
            startup[idx] = first - pid.stat().st_mtime
        if "val_acc" in scalars:
            curve = acc.Scalars("val_acc")
            done = len({ev.step for ev in curve})
            epochs[idx] = done
            todo = (planned or {}).get(idx, done) - done
            if todo > 0 and first is not None:
                unrun[idx] = todo * (max(ev.wall_time for ev in curve) - first) / done
    return startup, epochs, unrun


def nasop_run(
    cmd: list[str], work: Path, env: dict[str, str], timeout: float
) -> tuple[str, int, bool, float]:
    """Run `nasop run` to the end or `timeout`: its output, exit code, whether it timed out, and
    its wall seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # like Ctrl-C: trials cancelled, state saved
        timed_out = True
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate()
    return output, proc.returncode, timed_out, time.perf_counter() - start


def nasop_status(path: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The search's status block, as `nasop status -o json` prints it."""
    cmd = [sys.executable, "-m", "nasop.cli", "status", str(path)]
    cmd += ["--state-dir", str(work / "state"), "-o", "json"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def run_one(
    trials: int,
    mode: str,
    seed: int,
    data: str,
    cores: str,
    out: Path,
    timeout: float,
    rule: dict[str, Any] | None = None,
    preload: str = "",
) -> dict[str, Any]:
    """mode: none (no early stopping), es (with), fresh (none, every trial a fresh process)."""
    m = manifest(trials, mode, seed, rule)
    name = m["metadata"]["name"]
    work = out / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    env = dict(os.environ, NASOP_DATA_DIR=data, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "nasop.cli", "run", str(path)]
    cmd += ["--state-dir", str(work / "state"), "--quiet"]
    if preload and mode != "fresh":
        cmd += ["--preload", preload]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    output, code, timed_out, wall = nasop_run(cmd, work, env, timeout)
    (work / "run.log").write_text(output)
    if code != 0 and not timed_out:
        raise SystemExit(f"{name}: nasop run exited {code}\n{output[-3000:]}")
    status = nasop_status(path, work, env)
    per_trial = trainer_seconds(work / "state" / "logs" / name)
    planned = stopped_plans(work / "state" / "state" / f"{name}.json")
    startup, epochs, unrun = curve_stats(work / "state" / "logs" / name, planned)
    packed = any((work / "state" / "logs" / name).glob("pack-*"))
    times = trial_times(work / "state" / "logs" / name)
    outcomes = trial_outcomes(work / "state" / "state" / f"{name}.json")
    return {
        "name": name,
        "wall_s": wall,
        "trainer_s": sum(per_trial),
        "trials": len(per_trial),
        "startup_s": sum(startup.values()),
        "epochs": sum(epochs.values()),
        "unrun_s": sum(unrun.values()),
        # per trial index, for first_trials
        "per_trial": {i: [startup.get(i, 0.0), epochs.get(i, 0), unrun.get(i, 0.0)] for i in times},
        "completed": status["trials"]["completed"],
        "early_stopped": status["trials"].get("earlyStopped", 0),
        "failed": status["trials"]["failed"],
        "hypervolume": status.get("hypervolume") or 0.0,
        "pareto": status.get("paretoSize", 0),
        "phase": status["phase"],
        "mode": mode,
        "seed": seed,
        "timed_out": timed_out,
        # (trainer seconds, final metrics or None) per trial in the order they ended
        "anytime": [] if packed else anytime_trials(times, outcomes),
        "order": [] if packed else end_order(times),
        "stopped": sorted(planned),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="mnist.npz or a torchvision dir")
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument(
        "--es-trials",
        type=int,
        default=0,
        help="trials for modes es/honest (default --trials): more, to measure the time to "
        "reach mode none's hypervolume with the trials early stopping buys",
    )
    ap.add_argument("--seeds", default="0", help="comma-separated optimizer seeds")
    ap.add_argument("--cores-per-run", type=int, default=2, help="CPUs per search (0 = no pin)")
    ap.add_argument("--parallel", action="store_true", help="run searches side by side")
    ap.add_argument(
        "--modes",
        default="none,es",
        help="comma-separated: none (no early stopping), es (with), honest (es with "
        "earlyStopping.epochsParameter: epochs), fresh (none, "
        "without the fork server: every trial imports torch and Lightning), "
        "packed (none, with spec.trial.pack: see PACK)",
    )
    ap.add_argument(
        "--preload",
        default=PRELOAD,
        help="nasop run --preload for the none/es runs ('' = fresh processes)",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per search")
    ap.add_argument(
        "--early-stopping",
        default="",
        help="spec.earlyStopping as JSON, 'any' (EARLY_STOPPING_ANY), 'pareto' "
        "(EARLY_STOPPING_PARETO), 'front' (EARLY_STOPPING_FRONT) or 'gain' (EARLY_STOPPING_GAIN); "
        "default EARLY_STOPPING "
        "(percentile)",
    )
    ap.add_argument("--out", default="", help="keep run directories here (default: temp)")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        raise SystemExit(f"no MNIST at {args.data}: pass --data (an mnist.npz)")
    args.data = str(Path(args.data).resolve())  # trials run in their own directories
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - {"none", "es", "honest", "fresh", "packed"}:
        raise SystemExit(f"--modes: none, es, honest, fresh or packed, not {','.join(args.modes)}")
    return args


def early_stopping_rule(flag: str) -> dict[str, Any]:
    """The spec.earlyStopping of mode `es`, from --early-stopping."""
    if flag == "any":
        return EARLY_STOPPING_ANY
    if flag == "pareto":
        return EARLY_STOPPING_PARETO
    if flag == "front":
        return EARLY_STOPPING_FRONT
    if flag == "gain":
        return EARLY_STOPPING_GAIN
    return json.loads(flag) if flag else EARLY_STOPPING


def run_all(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Every (seed, mode) search, `--parallel` ones side by side, each pinned to its own cores."""
    rule = early_stopping_rule(args.early_stopping)
    jobs = [(mode, int(seed)) for seed in args.seeds.split(",") for mode in args.modes]
    k = args.cores_per_run
    ncpu = os.cpu_count() or 1
    slots = max(1, ncpu // k) if (args.parallel and k) else 1

    def cores(i: int) -> str:
        return "" if not k else ",".join(str((i % slots) * k + c) for c in range(k))

    def run(i: int, job: tuple[str, int]) -> dict[str, Any]:
        mode, seed = job
        trials = args.es_trials if mode in ("es", "honest") and args.es_trials else args.trials
        return run_one(
            trials, mode, seed, args.data, cores(i), out, args.timeout, rule, args.preload
        )

    with concurrent.futures.ThreadPoolExecutor(slots) as pool:
        rows = list(pool.map(run, range(len(jobs)), jobs))
    print(
        f"tutorial search, {args.trials} trials, {k or 'all'} cores per search, "
        f"{slots} at a time ({ncpu} CPUs), runs in {out}"
    )
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'run':<20} {'wall s':>8} {'trainer s':>10} {'startup s':>10} {'unrun s':>8} "
        f"{'epochs':>7} {'trials':>7} {'completed':>10} "
        f"{'stopped':>8} {'failed':>7} {'HV':>10} {'front':>6}"
    )
    for r in rows:
        flag = " (timed out)" if r["timed_out"] else ""
        print(
            f"{r['name']:<20} {r['wall_s']:8.1f} {r['trainer_s']:10.1f} "
            f"{r['startup_s']:10.1f} {r['unrun_s']:8.1f} {r['epochs']:7d} {r['trials']:7d} "
            f"{r['completed']:10d} {r['early_stopped']:8d} {r['failed']:7d} "
            f"{r['hypervolume']:10.1f} {r['pareto']:6d}{flag}"
        )


def mode_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per mode that ran, the mean over seeds of each measured quantity."""
    modes = ("none", "es", "honest", "fresh", "packed")
    by = {m: [r for r in rows if r["mode"] == m] for m in modes}
    keys = ("wall_s", "trainer_s", "startup_s", "epochs", "hypervolume", "early_stopped", "unrun_s")
    return {
        m: {key: statistics.mean(r[key] for r in rs) for key in keys} for m, rs in by.items() if rs
    }


def print_fork_server(base: dict[str, float], fresh: dict[str, float], preload: str) -> None:
    print(
        f"fork server (--preload {preload}) vs fresh processes, no early stopping: "
        f"trainer time {base['trainer_s'] / fresh['trainer_s']:.2f}x, start-up "
        f"{base['startup_s'] / fresh['startup_s']:.2f}x, wall "
        f"{base['wall_s'] / fresh['wall_s']:.2f}x, HV {base['hypervolume']:.1f} vs "
        f"{fresh['hypervolume']:.1f}"
    )


def print_packing(base: dict[str, float], packed: dict[str, float], none_hvs: list[float]) -> None:
    print(
        f"packing ({PACK}, {PACK_PARALLELISM} packs at a time) vs one process per trial "
        f"(fork server), means over {len(none_hvs)} seed(s): wall "
        f"{base['wall_s'] / packed['wall_s']:.2f}x faster (target >= 2x), HV "
        f"{packed['hypervolume']:.1f} vs {base['hypervolume']:.1f} (between-seed range "
        f"without packing {min(none_hvs):.1f}..{max(none_hvs):.1f})"
    )


def print_early_stopping(
    base: dict[str, float], es: dict[str, float], seeds: int, label: str = "early stopping"
) -> None:
    saved = 1 - es["trainer_s"] / base["trainer_s"]
    hv = es["hypervolume"] / base["hypervolume"] - 1 if base["hypervolume"] else float("nan")
    print(
        f"means over {seeds} seed(s): without early stopping wall "
        f"{base['wall_s']:.0f} s, HV {base['hypervolume']:.1f}; with: wall "
        f"{es['wall_s']:.0f} s, HV {es['hypervolume']:.1f}, "
        f"{es['early_stopped']:.1f} trials stopped"
    )
    print(
        f"{label}: epochs trained {1 - es['epochs'] / base['epochs']:.1%} fewer; "
        f"trainer time saved {saved:.1%} (target >= 25%), "
        f"hypervolume change {hv:+.1%} (target >= -1%), "
        f"wall {es['wall_s'] / base['wall_s']:.2f}x"
    )
    cut = es["unrun_s"] / (es["trainer_s"] + es["unrun_s"])
    print(
        f"within the early-stopping runs: the stopped trials' unrun epochs would have cost "
        f"{es['unrun_s']:.0f} s, so the rule cut {cut:.1%} "
        f"of what those runs would have trained (an estimate free of the between-run spread)"
    )
    share = base["startup_s"] / base["trainer_s"]
    print(
        f"startup (process start to first TensorBoard event: imports, data, model) is "
        f"{share:.0%} of trainer time without early stopping; early stopping can save at most "
        f"the other {1 - share:.0%}"
    )


def print_time_to_quality(rows: list[dict[str, Any]], share: float = 0.99) -> None:
    """Per seed with both modes: the trainer seconds mode none and mode es took to reach `share`
    of none's final hypervolume, as fractions of none's trainer seconds."""
    none = {r["seed"]: r for r in rows if r["mode"] == "none" and r.get("anytime")}
    es = {r["seed"]: r for r in rows if r["mode"] == "es" and r.get("anytime")}
    seeds = sorted(set(none) & set(es))
    if not seeds:
        return
    print(
        f"time to quality: trainer seconds to reach {share:.0%} of mode none's final hypervolume, "
        "as a fraction of none's trainer seconds (es: with the trials its stops bought)"
    )
    fractions = []
    for seed in seeds:
        base = none[seed]
        total = sum(sec for sec, _ in base["anytime"])
        final = hypervolume([m for _, m in base["anytime"] if m is not None])
        t_none = seconds_to_reach(base["anytime"], share * final)
        t_es = seconds_to_reach(es[seed]["anytime"], share * final)
        reached = f"{t_es / total:.2f}" if t_es is not None else "not reached"
        print(
            f"  seed {seed}: none {t_none / total if t_none else float('nan'):.2f}, es {reached} "
            f"({es[seed]['trials']} trials, {sum(s for s, _ in es[seed]['anytime']) / total:.2f} "
            "of none's seconds in all)"
        )
        fractions.append(t_es / total if t_es is not None else float("inf"))
    got = [f for f in fractions if f != float("inf")]
    print(
        f"  es reached it on {len(got)} of {len(seeds)} seeds; mean fraction over those "
        f"{statistics.mean(got) if got else float('nan'):.2f} (target <= 0.75: 25% saved at <= 1%)"
    )


def paired_hv(rows: list[dict[str, Any]], mode: str) -> tuple[list[float], float, float] | None:
    """Per seed run in both modes: the hypervolume change of `mode` against `none` as a
    fraction of the mean `none` hypervolume, and the 95% t interval of the mean change (the
    spread between seeds is what decides whether a mean change of a few percent means
    anything)."""
    none = {r["seed"]: r["hypervolume"] for r in rows if r["mode"] == "none"}
    other = {r["seed"]: r["hypervolume"] for r in rows if r["mode"] == mode}
    seeds = sorted(set(none) & set(other))
    if len(seeds) < 2:
        return None
    base = statistics.mean(none[s] for s in seeds)
    diffs = [(other[s] - none[s]) / base for s in seeds]
    from scipy.stats import t as student_t  # Ax's dependency

    t95 = float(student_t.ppf(0.975, len(seeds) - 1))
    half = t95 * statistics.stdev(diffs) / len(seeds) ** 0.5
    mean = statistics.mean(diffs)
    return diffs, mean - half, mean + half


def print_paired(rows: list[dict[str, Any]], mode: str) -> None:
    paired = paired_hv(rows, mode)
    if paired is None:
        return
    diffs, low, high = paired
    print(
        f"hypervolume change per seed ({mode} vs none, of none's mean): "
        + " ".join(f"{d:+.1%}" for d in diffs)
        + f"; 95% t interval of the mean {low:+.1%} to {high:+.1%}"
    )


def print_comparisons(rows: list[dict[str, Any]], preload: str, trials: int = 0) -> None:
    """Each mode that ran against mode `none` of the same seeds, as ratios of the means; modes
    es/honest given more trials (--es-trials) count their first `trials` trials here."""
    if trials:
        rows = [first_trials(r, trials) if r["mode"] in ("es", "honest") else r for r in rows]
    mean = mode_means(rows)
    none_hvs = [r["hypervolume"] for r in rows if r["mode"] == "none"]
    if "none" in mean and "fresh" in mean:
        print_fork_server(mean["none"], mean["fresh"], preload)
    if "none" in mean and "packed" in mean:
        print_packing(mean["none"], mean["packed"], none_hvs)
    if "none" in mean and "es" in mean:
        print_early_stopping(mean["none"], mean["es"], len(none_hvs))
        print_paired(rows, "es")
    if "none" in mean and "honest" in mean:
        label = "early stopping, epochsParameter"
        print_early_stopping(mean["none"], mean["honest"], len(none_hvs), label)
        print_paired(rows, "honest")
    if "none" in mean and "es" in mean and "honest" in mean and mean["none"]["hypervolume"]:
        lost = {
            m: 1 - mean[m]["hypervolume"] / mean["none"]["hypervolume"] for m in ("es", "honest")
        }
        removed = 1 - lost["honest"] / lost["es"] if lost["es"] else float("nan")
        print(
            f"hypervolume lost to the rule: {lost['es']:.1%} today, {lost['honest']:.1%} with "
            f"epochsParameter ({removed:.0%} of the loss removed)"
        )
    worst = max(r["wall_s"] for r in rows)
    print(f"slowest search: {worst / 60:.1f} min (target < 10 min)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="nasop-tutorial-"))
    rows = run_all(args, out)
    print_rows(rows)
    print_comparisons(rows, args.preload, args.trials if args.es_trials else 0)
    print_anytime(rows)
    print_time_to_quality(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
