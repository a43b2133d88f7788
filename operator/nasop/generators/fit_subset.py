"""The GP fitted on a bounded subset of the completed trials, past a threshold.

An exact GP costs O(n^3) to fit in its n training points, and qLogNEHVI samples the model
jointly at every one of them (its `X_baseline`): measured on the tutorial's space with one
torch thread, one proposal took 44 s at 1,000 completed trials, about half in the fit and
half in the acquisition optimisation (bench/proposal_scale.py --profile 1000;
docs/benchmarks.md). Both shrink with the training set, and a search with thousands of trials
learns little from its thousandth dominated point that its hundredth did not teach.

`FitSubset` is an Ax transform that, when more than `threshold` trials have data, keeps the
data of `size` of them and drops the rest from what the model sees (the experiment keeps
every trial):

1. the Pareto-relevant ones: non-dominated layers on the objectives (each trial's last
   observed mean, directions from the optimization config), layer by layer until a quarter
   of `size` is filled; the first layer always whole, however large (then the subset is
   larger than `size`);
2. the `size // 4` most recent ones by trial index (where the search is now), whether or
   not already taken;
3. a uniform sample of the rest, up to `size`: the space the model must still cover. Each
   trial gets a fixed pseudo-random key from (seed, trial index) (`sample_keys`, splitmix64)
   and the sample is the rest's smallest keys, so one more trial changes the sample by at
   most one trial: the warm-started fit (`nasop.generators.surrogate`) starts near its
   optimum, where a fresh draw each step would move every point.

The choice is a function of the data and the seed: the same history gives the same subset.
At or below `threshold` trials the transform is the identity, so short searches are modelled
exactly as before. The options live in the strategy's `transform_configs` (`CONFIG_KEY`),
saved and restored with it; the engine (`nasop.engine.strategy.fit_subset`) adds the
transform first in the model node's list (after `StoppedAsShorter` where the manifest asks
for it; neither changes what the other reads).

Past the threshold the fixed cost of the optimisers dominates a proposal, not the subset's size
(a 64-point subset was no faster than 128: docs/benchmarks.md), so the transform also sets a
`StepPlan` on the model's `WarmStartSurrogate` for the step (None at or below the threshold):
re-optimise the GP's hyperparameters once every `refit_every` trials and keep them between
(`nasop.generators.surrogate`), and optimise the acquisition with `raw_samples` starting points
and `num_restarts` restarts (`nasop.generators.exhaustive`). A config without these keys (a
strategy saved before they existed) keeps refitting every step with the strategy's budget.

Trials outside the subset are no longer in the model's training data, so nor in the
acquisition's observed points: Ax's deduplication against the experiment's arms still keeps
them from being proposed again. `ExhaustiveAcquisition` avoids only the subset's points, so on
a small discrete space it could pick a dropped configuration again: the engine does not add
the transform where the acquisition may be enumerated (`strategy.may_enumerate`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ax.adapter.transforms.base import Transform
from ax.core.data_utils import ExperimentData
from ax.storage.transform_registry import register_transform

from nasop.generators.surrogate import StepPlan, WarmStartSurrogate

#: `transform_configs` key of the transform's options
CONFIG_KEY = "FitSubset"
#: defaults: fit on every trial up to THRESHOLD, on SIZE of them past it
THRESHOLD = 150
SIZE = 128


def non_dominated(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of y (n x m, larger is better in every column) that no other
    row dominates (at least as good everywhere, better somewhere). Ties are all kept.

    Rows are visited in decreasing lexicographic order, so a row's dominators come before it;
    a dominated row is dominated by a row of the front, so each row is compared with the front
    found so far only: O(n x front), not O(n^2).
    """
    n = y.shape[0]
    if y.shape[1] == 2:
        return _non_dominated_2d(y)
    keep = np.zeros(n, dtype=bool)
    order = np.lexsort(-y.T[::-1])  # first column first, each decreasing
    front = np.empty((0, y.shape[1]))
    for i in order:
        row = y[i]
        if front.size and (np.all(front >= row, axis=1) & np.any(front > row, axis=1)).any():
            continue
        keep[i] = True
        front = np.vstack([front, row])
    return keep


def _non_dominated_2d(y: np.ndarray) -> np.ndarray:
    """`non_dominated` for two columns, vectorised: a row is dominated when a row with a
    larger first value has at least its second value, or a row with the same first value has
    a larger second one."""
    a, b = y[:, 0], y[:, 1]
    values, group = np.unique(a, return_inverse=True)  # increasing first values
    best_b = np.full(values.size, -np.inf)
    np.maximum.at(best_b, group, b)
    # the largest second value among rows with a strictly larger first value
    above = np.concatenate([np.maximum.accumulate(best_b[::-1])[::-1][1:], [-np.inf]])
    return ~((above[group] >= b) | (best_b[group] > b))


def pareto_layers(y: np.ndarray, want: int) -> list[int]:
    """Row indices of the non-dominated layers of y, peeled one after another until at least
    `want` rows are taken (the first layer always whole); rows with a NaN are never taken."""
    rest = np.flatnonzero(~np.isnan(y).any(axis=1))
    taken: list[int] = []
    while rest.size and (not taken or len(taken) < want):
        mask = non_dominated(y[rest])
        taken += rest[mask].tolist()
        rest = rest[~mask]
    return taken


def sample_keys(trials: list[int], seed: int) -> np.ndarray:
    """A pseudo-random key in [0, 2^64) per trial index, fixed by (seed, index): splitmix64."""
    with np.errstate(over="ignore"):
        x = np.asarray(trials, dtype=np.uint64) + np.uint64(seed % 2**32) * np.uint64(2**32)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def choose(trials: list[int], y: np.ndarray | None, size: int, seed: int) -> list[int]:
    """The trials to fit on: Pareto layers, the most recent, a seeded sample (module docstring).

    Args:
        trials: trial indices with data, in increasing order.
        y: one row per trial, one column per objective, larger is better (None: no objectives).
        size: how many to keep (all of them if there are not more).
        seed: the sample's seed.
    """
    if len(trials) <= size:
        return list(trials)
    keep: dict[int, None] = {}  # ordered set of positions into `trials`
    if y is not None and y.size:
        for i in pareto_layers(y, size // 4):
            keep[i] = None
    for i in range(max(0, len(trials) - size // 4), len(trials)):  # the most recent
        keep.setdefault(i)
    rest = np.array([i for i in range(len(trials)) if i not in keep], dtype=int)
    room = size - len(keep)
    if room > 0 and rest.size:
        keys = sample_keys([trials[i] for i in rest], seed)
        for i in rest[np.argsort(keys, kind="stable")[:room]].tolist():
            keep[i] = None
    return sorted(trials[i] for i in keep)


def objective_directions(adapter: Any) -> dict[str, float]:
    """Metric signature -> +1 (maximise) or -1 (minimise), from the adapter's optimization
    config; empty when there is none."""
    config = None if adapter is None else getattr(adapter, "_optimization_config", None)
    if config is None and adapter is not None:
        config = adapter._experiment.optimization_config
    if config is None:
        return {}
    # Ax's weights: positive to maximise, negative to minimise (a scalarized objective's
    # metrics each count as one objective: its optimum is on their joint front)
    return {
        signature: float(np.sign(weight))
        for signature, weight in config.objective.metric_weights
        if weight
    }


class FitSubset(Transform):
    """The model's training data cut to a bounded subset of trials (see the module docstring).

    Config: `{"threshold": int, "size": int, "seed": int, "refit_every": int, "raw_samples":
    int, "num_restarts": int}`; each optional (module defaults, seed 0, refit every step, the
    strategy's acquisition budget: 0 or absent keeps it). A size larger than the threshold is
    allowed (then nothing is cut between them).
    """

    no_op_for_experiment_data = False

    def transform_experiment_data(self, experiment_data: ExperimentData) -> ExperimentData:
        threshold, size, seed = (
            self._option("threshold", THRESHOLD),
            self._option("size", SIZE),
            self._option("seed", 0),
        )
        obs = experiment_data.observation_data
        trial_level = obs.index.get_level_values("trial_index")
        trials = sorted({int(t) for t in trial_level})
        active = len(trials) > threshold and len(trials) > size
        self._set_plan(self._plan(len(trials)) if active else None)
        if not active:
            return experiment_data
        y = self._objective_values(experiment_data, trials)
        kept = set(choose(trials, y, size, seed))
        experiment_data.observation_data = obs[trial_level.isin(kept)]
        arms = experiment_data.arm_data
        arm_trials = arms.index.get_level_values("trial_index")
        # arms without data (running trials) stay: Ax takes pending points from elsewhere
        experiment_data.arm_data = arms[arm_trials.isin(kept) | ~arm_trials.isin(trials)]
        return experiment_data

    def _plan(self, trials: int) -> StepPlan:
        budget = {key: self._option(key, 0) for key in ("raw_samples", "num_restarts")}
        return StepPlan(
            trials=trials,
            refit_every=self._option("refit_every", 1),
            optimizer_kwargs={key: value for key, value in budget.items() if value},
        )

    def _set_plan(self, plan: StepPlan | None) -> None:
        """Hand this step's plan to the model's surrogate, the one object that both the fit and
        the acquisition read (Ax passes nothing else from a transform to them)."""
        generator = getattr(self.adapter, "generator", None)
        surrogate = getattr(generator, "_surrogate", None)
        if isinstance(surrogate, WarmStartSurrogate):
            surrogate.plan = plan

    def _option(self, key: str, default: int) -> int:
        value = self.config.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"transform_configs[{CONFIG_KEY!r}][{key!r}]: {value!r} is not a whole number "
                f">= 0; set it with nasop.engine.strategy.fit_subset"
            )
        return value

    def _objective_values(
        self, experiment_data: ExperimentData, trials: list[int]
    ) -> np.ndarray | None:
        """Each trial's last observed mean per objective, signed so that larger is better."""
        directions = objective_directions(self.adapter)
        means = experiment_data.observation_data.get("mean")
        if not directions or means is None:
            return None
        columns = [s for s in directions if s in means.columns]
        if not columns:
            return None
        # the last row per trial (rows are sorted by step within a trial where there are steps)
        last = means[columns].groupby(level="trial_index").last()
        last = last.reindex(trials)
        return last.to_numpy(dtype=float) * np.array([directions[c] for c in columns])


register_transform(FitSubset)  # strategies that use it are saved and restored

__all__ = [
    "CONFIG_KEY",
    "SIZE",
    "THRESHOLD",
    "FitSubset",
    "choose",
    "non_dominated",
    "objective_directions",
    "pareto_layers",
    "sample_keys",
]
