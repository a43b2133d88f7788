"""Pareto front and hypervolume of the observed trials.

Objectives are turned into maximisation (minimised metrics negated). The reference point is the
objective thresholds; where a threshold is missing it is inferred from the observed front as Ax
does (BoTorch's `infer_reference_point`): the front's worst value less 10% of its range (of the
value's magnitude for a one-point front), so that a front of one or two points, and its extreme
points, add volume. Points that violate an outcome constraint are not on the front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning
from botorch.utils.multi_objective.hypervolume import infer_reference_point

from nasop import spec
from nasop.generators.fit_subset import non_dominated  # one Pareto mask, O(n x front)


@dataclass(frozen=True)
class Observation:
    """One completed trial's final metrics."""

    trial: int
    parameters: dict[str, Any]
    metrics: dict[str, float]
    job: str | None = None


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
    objectives: list[spec.Objective],
    observations: list[Observation],
    constraints: list[spec.OutcomeConstraint] | None = None,
) -> dict[str, float]:
    """Thresholds from the spec; missing ones inferred from the observed front (the feasible
    points beating the given thresholds if any do, else the feasible points, else all)."""
    out = {o.metric: float(o.threshold) for o in objectives if o.threshold is not None}
    missing = [o for o in objectives if o.threshold is None]
    metrics = [o.metric for o in objectives]
    complete = [
        ob
        for ob in observations
        if all(m in ob.metrics and np.isfinite(ob.metrics[m]) for m in metrics)
    ]
    if not missing or not complete:
        return out
    pool = [ob for ob in complete if feasible(ob, constraints or [])] or complete
    sign = np.array([-1.0 if o.minimize else 1.0 for o in objectives])
    y = np.array([[ob.metrics[m] for m in metrics] for ob in pool]) * sign
    given = np.array(
        [out[o.metric] * sign[j] if o.metric in out else -np.inf for j, o in enumerate(objectives)]
    )
    beating = (y > given).all(axis=1)
    y = y[beating] if beating.any() else y
    inferred = infer_reference_point(torch.as_tensor(y[non_dominated(y)], dtype=torch.double))
    for j, o in enumerate(objectives):
        if o.threshold is None:
            out[o.metric] = float(inferred[j]) * float(sign[j])
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
    `reference`, else `reference_point` of these observations)."""
    metrics = [o.metric for o in objectives]
    complete = [
        ob
        for ob in observations
        if all(m in ob.metrics and np.isfinite(ob.metrics[m]) for m in metrics)
    ]
    ok = [ob for ob in complete if feasible(ob, constraints)]
    ref = reference if reference is not None else reference_point(objectives, complete, constraints)
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


__all__ = [
    "Front",
    "Observation",
    "feasible",
    "front",
    "hypervolume",
    "non_dominated",
    "reference_point",
]
