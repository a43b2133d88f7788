"""Early-stopping rules replayed on recorded searches: what a rule would save, what it would cost.

A real run of the tutorial search takes minutes and mixes a rule's effect with which trials BoTorch
proposed next (hypervolume std over seeds: 5%). This replays rules on the learning curves of
searches run *without* early stopping (`bench/tutorial_search.py --modes none --out DIR`), in the
order their epochs were logged: at each epoch event a rule sees only what had been logged by
then; a stopped trial keeps its value at that epoch and saves its remaining epochs at its own
seconds per epoch. The proposals stay those of the recorded run (no feedback to BoTorch: a real
run that stops trials models them by their last values and proposes differently) and a stop
takes effect at once, so on those trials a replayed saving is the most the rule could save.

Printed per recorded run and as means: trainer time saved, hypervolume change, trials stopped, for
- `oracle`: stops, after epoch 1, the trials that give up the least hypervolume per second saved,
  knowing every final value, until 1% of the hypervolume is gone; no rule can do better on these
  trials at that cost;
- `percentile`: below the median of the other trials' values at the same epoch (as the bench's
  default rule: minCurves 5);
- `pareto need=N d=D`: N other trials at least as small and at least D more accurate at the same
  epoch (nasop's `dominatedBy: N` is d=0);
- `front P<L`: nasop's `frontProbability: L` (`nasop.engine.stopping.front_calls`, the function
  the operator runs): the chance that the trial's final val_acc, predicted from the gains the
  other curves made from its epoch to its last, beats the best completed trial at its size or
  smaller (and the manifest's thresholds, the replay's reference point) is below L; minCurves 5,
  from the first epoch, the final epoch known (as with `earlyStopping.epochsParameter`);
- `gain < Rx rate`: nasop's `gainRatio: R` (`nasop.engine.stopping.gain_calls`): the trial's
  expected hypervolume gain (the same prediction, integrated against the front's staircase at
  its size) per second of its remaining training, below R times the hypervolume per trainer
  second the last 8 completed trials bought; with the engine's inputs (seconds since the
  trial's process started, the trials ended by the replayed moment, a stopped trial's seconds
  up to its stop);
- `oracle at the bar`: the front rule's bound: after epoch 1 it stops exactly the trials whose
  final val_acc does not beat the bar the front rule uses (the completed trials at their size or
  smaller, and the thresholds), knowing every final value but only the trials completed so far.
  The gap between it and `oracle` is trials that later trials dominate, which no rule judging
  against the front reached so far can see.

Usage (repo root): python bench/stopping_replay.py DIR [DIR ...]  (each a run directory
    tutorial-none-sN made by tutorial_search.py, or a folder holding them)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasop import spec
from nasop.engine import pareto, stopping

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _problems

#: the tutorial manifest's thresholds, as (val_acc, -num_params): both larger-is-better
_OBJECTIVES = {o.metric: o for o in _problems.tutorial_spec().objectives}
REFERENCE = np.array([_OBJECTIVES["val_acc"].threshold, -_OBJECTIVES["num_params"].threshold])
BUDGET = 0.01  # hypervolume the oracle may give up


@dataclass
class Trial:
    num_params: float
    curve: list[float]  # val_acc per epoch
    logged: list[float]  # wall time of each epoch's val_acc
    seconds: float  # process start to exit
    started: float  # process start (wall time)
    per_epoch: float  # seconds per epoch, first event to last val_acc over epochs run
    features: tuple[float, ...] | None = None  # its parameters in the unit cube


def _parameters(state_file: Path) -> dict[int, dict[str, Any]]:
    """Each trial's parameters, by index, from the search's state file (`nasop run`'s)."""
    if not state_file.exists():
        return {}
    saved = json.loads(state_file.read_text())
    return {
        int(e["index"]): e["trial"]["generator_run"]["arms"][0]["parameters"]
        for e in saved.get("tail", [])
    }


def load_run(log_root: Path, state_file: Path | None = None) -> list[Trial]:
    """The trials of one recorded search from their TensorBoard files and wrapper markers, with
    their parameters from `state_file` when given."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    params = _parameters(state_file) if state_file else {}
    space = _problems.tutorial_spec().search_space
    trials = []
    for d in sorted(log_root.glob("trial-*")):
        pid, end = d / ".nasop" / "pid", d / ".nasop" / "exit"
        acc = EventAccumulator(str(d))
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        if "val_acc" not in tags or "num_params" not in tags or not end.exists():
            continue
        first = acc.Scalars("num_params")[0]
        events = sorted({e.step: e for e in acc.Scalars("val_acc")}.items())
        trials.append(
            Trial(
                num_params=first.value,
                curve=[e.value for _, e in events],
                logged=[e.wall_time for _, e in events],
                seconds=end.stat().st_mtime - pid.stat().st_mtime,
                started=pid.stat().st_mtime,
                per_epoch=(events[-1][1].wall_time - first.wall_time) / len(events),
                features=stopping.unit_features(p, space, "epochs")
                if (p := params.get(int(d.name.split("-")[-1])))
                else None,
            )
        )
    return trials


def hypervolume(points: list[tuple[float, float]]) -> float:
    return pareto.hypervolume(np.array([[a, -n] for a, n in points]), REFERENCE)


def full_hypervolume(trials: list[Trial]) -> float:
    """The run's hypervolume as recorded (every trial at its last epoch)."""
    return hypervolume([(t.curve[-1], t.num_params) for t in trials])


def outcome(trials: list[Trial], stopped: dict[int, int], full: float) -> tuple[float, float]:
    """(fraction of trainer time saved, hypervolume change relative to `full`) of stopping
    trial i after epoch index stopped[i]."""
    saved = sum((len(trials[i].curve) - 1 - k) * trials[i].per_epoch for i, k in stopped.items())
    kept = hypervolume(
        [(t.curve[stopped.get(i, len(t.curve) - 1)], t.num_params) for i, t in enumerate(trials)]
    )
    return saved / sum(t.seconds for t in trials), kept / full - 1


Rule = Callable[[list[Trial], dict[int, list[float]], int, int], bool]


@dataclass
class Clock:
    """The replay's time: the wall time of the epoch event being replayed, and when the trials
    stopped so far stopped (a stop ends the trial at that event)."""

    now: float = 0.0
    stopped_at: dict[int, float] = field(default_factory=dict)


CLOCK = Clock()


def replay(trials: list[Trial], rule: Rule) -> dict[int, int]:
    """Epoch events in logged order; `rule(trials, seen, i, k)` sees the values logged so far."""
    events = sorted((t.logged[k], i, k) for i, t in enumerate(trials) for k in range(len(t.curve)))
    seen: dict[int, list[float]] = {}
    stopped: dict[int, int] = {}
    CLOCK.stopped_at = {}
    for when, i, k in events:
        if i in stopped:
            continue
        CLOCK.now = when
        seen.setdefault(i, []).append(trials[i].curve[k])
        if k < len(trials[i].curve) - 1 and rule(trials, seen, i, k):
            stopped[i] = k
            CLOCK.stopped_at[i] = when
    return stopped


def percentile(min_curves: int = 5) -> Rule:
    def rule(trials: list[Trial], seen: dict[int, list[float]], i: int, k: int) -> bool:
        others = [v[k] for j, v in seen.items() if j != i and len(v) > k]
        return len(others) >= min_curves and seen[i][k] < np.percentile([*others, seen[i][k]], 50)

    return rule


def dominated(need: int = 1, margin: float = 0.0, min_curves: int = 5) -> Rule:
    def rule(trials: list[Trial], seen: dict[int, list[float]], i: int, k: int) -> bool:
        rivals = [(v[k], trials[j].num_params) for j, v in seen.items() if j != i and len(v) > k]
        if len(rivals) < min_curves:
            return False
        mine, size = seen[i][k], trials[i].num_params
        return sum(a >= mine + margin and n <= size for a, n in rivals) >= need

    return rule


def front(level: float, min_curves: int = 5) -> Rule:
    rule_spec = spec.StoppingRule(
        metric="val_acc", front_probability=level, min_progression=0, min_curves=min_curves
    )

    def rule(trials: list[Trial], seen: dict[int, list[float]], i: int, k: int) -> bool:
        curves = {
            j: stopping.Curve(
                dict(enumerate(v)),
                (-trials[j].num_params,),
                len(trials[j].curve) - 1,
                len(v) == len(trials[j].curve),
            )
            for j, v in seen.items()
        }
        floor, size_floor = REFERENCE
        return i in stopping.front_calls(rule_spec, curves, [i], floor, (size_floor,))

    return rule


def gain(ratio: float, min_curves: int = 5) -> Rule:
    """nasop's `gainRatio` rule (`nasop.engine.stopping.gain_calls`), with the live engine's
    inputs: seconds run since process start, and the recent rate from trials ended by now."""
    rule_spec = spec.StoppingRule(
        metric="val_acc", gain_ratio=ratio, min_progression=0, min_curves=min_curves
    )
    reference = (REFERENCE[0], REFERENCE[1])

    def rule(trials: list[Trial], seen: dict[int, list[float]], i: int, k: int) -> bool:
        now = CLOCK.now
        curves, ended = {}, []
        for j, v in seen.items():
            t = trials[j]
            done = len(v) == len(t.curve) and t.started + t.seconds <= now
            curves[j] = stopping.Curve(
                dict(enumerate(v)),
                (-t.num_params,),
                len(t.curve) - 1,
                done,
                now - t.started,
                t.features,
            )
            if done:
                ended.append(
                    stopping.Ended(t.started + t.seconds, t.seconds, (v[-1], -t.num_params))
                )
            elif j in CLOCK.stopped_at:
                ended.append(
                    stopping.Ended(CLOCK.stopped_at[j], CLOCK.stopped_at[j] - t.started, None)
                )
        rate = stopping.recent_rate(ended, reference, stopping.RATE_WINDOW)
        return i in stopping.gain_calls(rule_spec, curves, [i], reference, rate)

    return rule


def bar_oracle() -> Rule:
    def rule(trials: list[Trial], seen: dict[int, list[float]], i: int, k: int) -> bool:
        done = [
            (v[-1], (-trials[j].num_params,))
            for j, v in seen.items()
            if len(v) == len(trials[j].curve)
        ]
        floor, size_floor = REFERENCE
        bar = stopping.needed_to_add((-trials[i].num_params,), done, floor, (size_floor,))
        return k == 0 and trials[i].curve[-1] <= bar

    return rule


def oracle(trials: list[Trial]) -> dict[int, int]:
    """Greedy: the trial whose stop after epoch 1 costs least hypervolume per second saved,
    while the hypervolume stays within BUDGET of the full one."""
    stopped: dict[int, int] = {}
    full = full_hypervolume(trials)
    while True:
        best: tuple[float, int] | None = None
        base = outcome(trials, stopped, full)
        for i, t in enumerate(trials):
            if i in stopped or len(t.curve) < 2:
                continue
            saved, hv = outcome(trials, {**stopped, i: 0}, full)
            if hv < -BUDGET:
                continue
            score = (saved - base[0]) / max(base[1] - hv, 1e-12)
            if best is None or score > best[0]:
                best = (score, i)
        if best is None:
            return stopped
        stopped[best[1]] = 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="tutorial-none-sN run directories or their parents")
    args = ap.parse_args(argv)
    dirs = []
    for arg in map(Path, args.runs):
        dirs += [arg] if (arg / "state").is_dir() else sorted(arg.glob("tutorial-none-s*"))
    # keyed by folder and name: two folders may each hold a tutorial-none-s0
    runs = {
        f"{d.parent.name}/{d.name}": load_run(
            d / "state" / "logs" / d.name, d / "state" / "state" / f"{d.name}.json"
        )
        for d in dirs
    }
    runs = {k: v for k, v in runs.items() if v}
    full = {k: full_hypervolume(v) for k, v in runs.items()}
    if not runs:
        raise SystemExit("no recorded runs: pass tutorial_search.py --modes none --out DIR runs")
    policies: dict[str, Callable[[list[Trial]], dict[int, int]]] = {
        f"oracle (<= {BUDGET:.0%} HV)": oracle,
        "oracle at the bar": lambda ts: replay(ts, bar_oracle()),
        "percentile 50": lambda ts: replay(ts, percentile()),
    }
    for need in (1, 2, 3):
        for margin in (0.0, 0.001, 0.003):
            policies[f"pareto need={need} d={margin:g}"] = lambda ts, n=need, m=margin: replay(
                ts, dominated(n, m)
            )
    for level in (0.05, 0.1, 0.2, 0.3, 0.4):
        policies[f"front P<{level:g}"] = lambda ts, lv=level: replay(ts, front(lv))
    for ratio in (0.25, 0.35, 0.5, 1.0, 2.0):
        policies[f"gain < {ratio:g}x rate"] = lambda ts, r=ratio: replay(ts, gain(r))
    print(f"replayed on {len(runs)} recorded run(s): {', '.join(runs)}")
    print(f"{'policy':<24} {'saved':>7} {'HV':>8} {'worst HV':>9} {'stopped':>8}  per run")
    for name, policy in policies.items():
        rows = [(*outcome(ts, stops := policy(ts), full[k]), len(stops)) for k, ts in runs.items()]
        saved, hv, n = (np.mean([r[c] for r in rows]) for c in range(3))
        worst = min(r[1] for r in rows)
        each = " ".join(f"{r[0]:.1%}/{r[1]:+.2%}" for r in rows)
        print(f"{name:<24} {saved:7.1%} {hv:+8.2%} {worst:+9.2%} {n:8.1f}  {each}")
    print("target: saved >= 25% for HV >= -1% (bench/tutorial_search.py measures real runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
