"""Pareto front and hypervolume of the observed trials.

Objectives are turned into maximisation (minimised metrics negated); the reference point is the
objective thresholds, or, where a threshold is missing, the worst observed value (the nadir).
Points that violate an outcome constraint are not on the front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

from nasop import spec


@dataclass(frozen=True)
class Observation:
    """One completed trial's final metrics."""

    trial: int
    parameters: dict[str, Any]
    metrics: dict[str, float]
    job: str | None = None


def non_dominated(y: np.ndarray) -> np.ndarray:
    """Mask of rows of `y` (maximisation) not dominated by any other row; duplicates are kept."""
    n = len(y)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominates_i = np.all(y >= y[i], axis=1) & np.any(y > y[i], axis=1)
        if dominates_i.any():
            mask[i] = False
    return mask


def hypervolume(y: np.ndarray, ref: np.ndarray) -> float:
    """Dominated hypervolume of maximisation points `y` above `ref` (BoTorch's partitioning)."""
    if len(y) == 0:
        return 0.0
    y_t = torch.as_tensor(y, dtype=torch.double)
    ref_t = torch.as_tensor(ref, dtype=torch.double)
    better = (y_t > ref_t).all(dim=-1)
    if not bool(better.any()):
        return 0.0
    if y_t.shape[-1] == 1:  # one objective: the best value's distance above the reference
        return float((y_t[better] - ref_t).max())
    return float(DominatedPartitioning(ref_point=ref_t, Y=y_t[better]).compute_hypervolume())


def feasible(obs: Observation, constraints: list[spec.OutcomeConstraint]) -> bool:
    for c in constraints:
        v = obs.metrics.get(c.metric)
        if v is None or not np.isfinite(v):
            return False
        if (c.op == "<=" and v > c.bound) or (c.op == ">=" and v < c.bound):
            return False
    return True


def reference_point(
    objectives: list[spec.Objective], observations: list[Observation]
) -> dict[str, float]:
    """Thresholds from the spec; missing ones from the worst observed value."""
    out: dict[str, float] = {}
    for o in objectives:
        if o.threshold is not None:
            out[o.metric] = float(o.threshold)
            continue
        vals = [ob.metrics[o.metric] for ob in observations if o.metric in ob.metrics]
        if vals:
            out[o.metric] = float(max(vals) if o.minimize else min(vals))
    return out


@dataclass(frozen=True)
class Front:
    points: list[Observation]
    hypervolume: float
    reference: dict[str, float]


def front(
    objectives: list[spec.Objective],
    constraints: list[spec.OutcomeConstraint],
    observations: list[Observation],
    reference: dict[str, float] | None = None,
) -> Front:
    """The observed Pareto front (feasible, non-dominated) and its hypervolume (w.r.t.
    `reference`, else the thresholds and the observed nadir)."""
    metrics = [o.metric for o in objectives]
    complete = [
        ob for ob in observations
        if all(m in ob.metrics and np.isfinite(ob.metrics[m]) for m in metrics)
    ]
    ok = [ob for ob in complete if feasible(ob, constraints)]
    ref = reference if reference is not None else reference_point(objectives, complete)
    if not ok:
        return Front([], 0.0, ref)
    sign = np.array([-1.0 if o.minimize else 1.0 for o in objectives])
    y = np.array([[ob.metrics[m] for m in metrics] for ob in ok]) * sign
    mask = non_dominated(y)
    points = sorted((ob for ob, keep in zip(ok, mask) if keep), key=lambda ob: ob.trial)
    hv = 0.0
    if len(ref) == len(metrics):
        hv = hypervolume(y[mask], np.array([ref[m] for m in metrics]) * sign)
    return Front(points, hv, ref)


__all__ = ["Front", "Observation", "feasible", "front", "hypervolume", "non_dominated"]
