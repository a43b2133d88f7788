"""Acquisition optimisation by enumeration, where the search space is small and discrete.

Ax optimises the acquisition function over a relaxation of the search space: unordered choices
become one-hot features on [0, 1], the optimiser climbs from a few hundred random starts in that
continuous box, and the result is rounded to a valid configuration. On a space of a few
thousand configurations (NAS-Bench-201: 6 choices of 5 operations, 15,625 cells) the rounded
optimum is often not the best configuration, and Ax's own enumeration switch (BoTorch's
`MAX_CHOICES_ENUMERATE`, 10,000 points) neither sees through the one-hot features nor is
configurable.

`ExhaustiveAcquisition` evaluates the acquisition function on every configuration instead,
when every model feature is discrete (a one-hot group of an unordered choice, or a feature
with a finite set of values: ordered choices, small int ranges) and there are at most
`MAX_POINTS` configurations, and picks the best one not yet observed or pending (BoTorch's
`optimize_acqf_discrete`; a batch is built greedily, each pick conditioned on the ones before).
On a space larger than `SCREEN_TOP + SCREEN_RANDOM` configurations the acquisition is not
evaluated on every one: qLogNEHVI's cost is its joint sampling of each candidate with the
baseline, and on NAS-Bench-201 that took most of a proposal's seconds. The analytic expected
hypervolume improvement screens them first (`expected_improvement`: the same expectation in
closed form, each objective an independent normal with the posterior's marginal mean and
standard deviation, against the front of the posterior means at the baseline), and qLogNEHVI is
evaluated on the `SCREEN_TOP` best of that plus `SCREEN_RANDOM` others drawn at random (so a
configuration that the marginals rank low can still be picked). What the closed form leaves
out (the correlation with the baseline and between objectives, the baseline's noise) rarely
moves a configuration from outside the top `SCREEN_TOP` to the top (docs/benchmarks.md
measures how often the pick changes). Without a reference point (one objective, or Ax's
feasibility-only acquisition while no trial meets every threshold) every configuration is
evaluated. The acquisition option `screen: False` (`acquisition_options` of the generator)
turns the screen off.

On a space that does not enumerate, or with linear parameter constraints, it is Ax's
`Acquisition`, with the
optimiser options of the surrogate's `StepPlan` where there is one (past `FitSubset`'s threshold:
a smaller budget, `nasop.generators.fit_subset`), else unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ax.adapter.transforms.one_hot import OH_PARAM_INFIX
from ax.core.search_space import SearchSpaceDigest
from ax.exceptions.core import SearchSpaceExhausted
from ax.generators.torch.botorch_modular.acquisition import Acquisition
from ax.storage.botorch_modular_registry import register_acquisition
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.exceptions.errors import InputDataError
from botorch.models.model import Model
from botorch.optim.optimize import optimize_acqf_discrete
from botorch.utils.multi_objective.box_decompositions.non_dominated import (
    FastNondominatedPartitioning,
)
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

#: enumerate the acquisition over at most this many configurations (NAS-Bench-201 has 15,625)
MAX_POINTS = 20_000
#: candidates per acquisition evaluation (BoTorch's default for optimize_acqf_discrete)
BATCH = 2048
#: past SCREEN_TOP + SCREEN_RANDOM configurations the acquisition is evaluated only on the
#: SCREEN_TOP best by `expected_improvement` and SCREEN_RANDOM others drawn at random: a
#: tenth of NAS-Bench-201's 15,625 cells, enough to hold the acquisition's argmax (module docstring)
SCREEN_TOP = 1024
SCREEN_RANDOM = 512


def _one_hot_group(name: str) -> str | None:
    """The choice parameter a one-hot feature encodes (Ax names them `<name>_OH_PARAM_<i>`)."""
    head, sep, tail = name.rpartition(OH_PARAM_INFIX)
    return head if sep and tail.isdigit() else None


def enumerate_choices(
    ssd: SearchSpaceDigest, fixed_features: dict[int, float] | None = None
) -> list[list[tuple[int, ...] | float]] | None:
    """Per factor, the values it can take, or None when some feature is continuous.

    A factor is a one-hot group (its values: the index of the feature set to 1) or one
    discrete feature (its values from `ssd.discrete_choices`); a fixed feature has one value.
    """
    fixed = fixed_features or {}
    groups: dict[str, list[int]] = {}
    factors: list[tuple[str, Any]] = []
    for i, name in enumerate(ssd.feature_names):
        if i in fixed:
            factors.append(("fixed", i))
        elif (group := _one_hot_group(name)) is not None:
            if group not in groups:
                groups[group] = []
                factors.append(("group", group))
            groups[group].append(i)
        elif i in ssd.discrete_choices:
            factors.append(("discrete", i))
        else:
            return None
    if not any(kind != "fixed" for kind, _ in factors):
        return None
    out: list[list[tuple[int, ...] | float]] = []
    for kind, key in factors:
        if kind == "group":
            out.append([(j,) for j in groups[key]])
        elif kind == "discrete":
            out.append([float(v) for v in ssd.discrete_choices[key]])
        else:
            out.append([float(fixed[key])])
    return out


def enumerate_points(
    ssd: SearchSpaceDigest,
    fixed_features: dict[int, float] | None = None,
    limit: int = MAX_POINTS,
    dtype: torch.dtype = torch.double,
) -> Tensor | None:
    """Every configuration as a row in the model's feature space, or None when the space has
    a continuous feature or more than `limit` configurations."""
    choices = enumerate_choices(ssd, fixed_features)
    if choices is None or math.prod(len(c) for c in choices) > limit:
        return None
    fixed = fixed_features or {}
    plain = [
        i
        for i in range(len(ssd.feature_names))
        if i in fixed or _one_hot_group(ssd.feature_names[i]) is None
    ]
    rows = []
    for combo in itertools.product(*choices):
        row = [0.0] * len(ssd.feature_names)
        k = 0
        for value in combo:
            if isinstance(value, tuple):
                row[value[0]] = 1.0
            else:
                row[plain[k]] = value
                k += 1
        rows.append(row)
    return torch.tensor(rows, dtype=dtype)


def _posterior_moments(model: Model, points: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's marginal posterior mean and standard deviation (n x m), in batches."""
    means, stds = [], []
    with torch.no_grad():
        for chunk in points.split(BATCH):
            # one point per batch: no joint covariance. Every posterior a model here returns
            # (GPyTorch's, a PosteriorList, a deterministic one) has a mean and a variance; the
            # base class Posterior declares neither
            post: Any = model.posterior(chunk.unsqueeze(-2))
            means.append(post.mean.squeeze(-2))
            stds.append(post.variance.clamp_min(0.0).sqrt().squeeze(-2))
    return torch.cat(means), torch.cat(stds)


def _expected_improvement(mu: Tensor, sigma: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Expected hypervolume improvement of independent normals (n x m) over the boxes
    lower..upper (cells x m): Yang et al. 2019, as BoTorch's analytic
    `ExpectedHypervolumeImprovement` computes it, on given moments instead of a model's."""
    normal = torch.distributions.Normal(torch.zeros_like(mu[:1]), torch.ones_like(mu[:1]))
    mu, sigma = mu.unsqueeze(-2), sigma.clamp_min(1e-9).unsqueeze(-2)  # n x 1 x m
    upper = upper.clamp_max(1e10)  # the outer boxes are unbounded

    def psi(a: Tensor, b: Tensor) -> Tensor:
        u = (b - mu) / sigma
        return sigma * normal.log_prob(u).exp() + (mu - a) * (1 - normal.cdf(u))

    nu = (upper - lower) * (1 - normal.cdf((upper - mu) / sigma))
    factors = torch.stack([psi(lower, lower) - psi(lower, upper), nu], dim=-2)  # n x c x 2 x m
    m = mu.shape[-1]
    pick = torch.tensor(list(itertools.product((0, 1), repeat=m)), device=mu.device)
    terms = factors.gather(-2, pick.expand(factors.shape[:-2] + pick.shape))  # n x c x 2^m x m
    return terms.prod(dim=-1).sum(dim=(-1, -2))


def expected_improvement(acqf: AcquisitionFunction, points: Tensor) -> Tensor | None:
    """Per point, its expected hypervolume improvement under the posterior's marginals, or
    None where the acquisition has no reference point to measure it from.

    In the acquisition's objective space (its `objective`, maximised), each objective taken as
    an independent normal with the posterior's mean and standard deviation; the front is the
    non-dominated set of the posterior means at the acquisition's baseline (the observed and
    pending points). qLogNEHVI estimates the same expectation by sampling the joint posterior
    of the point and the baseline, which is what makes it expensive.
    """
    ref_point = getattr(acqf, "ref_point", None)
    baseline = getattr(acqf, "X_baseline", None)
    objective = getattr(acqf, "objective", None)
    if ref_point is None or baseline is None or objective is None:
        return None
    model: Model = acqf.model
    mean, std = _posterior_moments(model, points)
    obj_mean = objective(mean.unsqueeze(-2)).squeeze(-2)
    # |objective(mean + std) - objective(mean)|: the std of a linear (weighted) objective
    obj_std = (objective((mean + std).unsqueeze(-2)).squeeze(-2) - obj_mean).abs()
    base_mean, _ = _posterior_moments(model, baseline)
    front = objective(base_mean.unsqueeze(-2)).squeeze(-2)
    front = front[is_non_dominated(front)]
    partitioning = FastNondominatedPartitioning(ref_point=ref_point.to(front), Y=front)
    lower, upper = partitioning.get_hypercell_bounds()  # boxes not dominated by the front
    return torch.cat(
        [
            _expected_improvement(mu, sd, lower, upper)
            for mu, sd in zip(obj_mean.split(BATCH), obj_std.split(BATCH), strict=True)
        ]
    )


def _unseen(points: Tensor, avoid: Tensor | None) -> Tensor:
    """The points that are not rows of avoid."""
    if avoid is None or avoid.shape[0] == 0:
        return points
    seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    for chunk in avoid.split(64):
        seen |= (points.unsqueeze(1) == chunk.unsqueeze(0)).all(dim=-1).any(dim=-1)
    return points[~seen]


def screen(acqf: AcquisitionFunction, points: Tensor) -> Tensor:
    """The points the acquisition is evaluated on: all of them up to SCREEN_TOP + SCREEN_RANDOM,
    else the SCREEN_TOP best by `expected_improvement` and SCREEN_RANDOM of the rest at random
    (the same ones for the same points and scores)."""
    if points.shape[0] <= SCREEN_TOP + SCREEN_RANDOM:
        return points
    score = expected_improvement(acqf, points)
    if score is None:
        return points
    order = torch.argsort(score, descending=True, stable=True)
    rest = order[SCREEN_TOP:]
    # a generator of its own, seeded by the count: reproducible, and torch's global one (the
    # acquisition's MC samples, the fits' restarts) left as the full enumeration leaves it
    generator = torch.Generator().manual_seed(points.shape[0])
    drawn = rest[torch.randperm(rest.shape[0], generator=generator).to(rest.device)[:SCREEN_RANDOM]]
    return points[torch.cat([order[:SCREEN_TOP], drawn])]


class ExhaustiveAcquisition(Acquisition):
    """Ax's Acquisition that enumerates small discrete spaces (see the module docstring), on
    a model whose known outcomes are exact (`nasop.generators.known`)."""

    def _construct_botorch_acquisition(
        self,
        botorch_acqf_class: type[AcquisitionFunction],
        botorch_acqf_options: dict[str, Any],
        model: Model,
    ) -> AcquisitionFunction:
        known = getattr(self.surrogate, "known", None)
        if known is not None:
            outcomes = list(self.surrogate.outcomes)
            if self._subset_idcs is not None:
                outcomes = [outcomes[i] for i in self._subset_idcs.tolist()]
            model = known.replace(model, outcomes, self.search_space_digest.feature_names)
        return super()._construct_botorch_acquisition(
            botorch_acqf_class=botorch_acqf_class,
            botorch_acqf_options=botorch_acqf_options,
            model=model,
        )

    def optimize(
        self,
        n: int,
        search_space_digest: SearchSpaceDigest,
        inequality_constraints: list[tuple[Tensor, Tensor, float]] | None = None,
        equality_constraints: list[tuple[Tensor, Tensor, float]] | None = None,
        fixed_features: dict[int, float] | None = None,
        rounding_func: Callable[[Tensor], Tensor] | None = None,
        optimizer_options: dict[str, Any] | None = None,
        candidate_set: Tensor | None = None,
        sampling_strategy: Any = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        points = None
        if not (inequality_constraints or equality_constraints or candidate_set is not None):
            points = enumerate_points(
                search_space_digest, fixed_features, dtype=self.dtype or torch.double
            )
        if points is None or sampling_strategy is not None:
            plan = getattr(self.surrogate, "plan", None)
            if plan is not None and plan.optimizer_kwargs:
                optimizer_options = {**(optimizer_options or {}), **plan.optimizer_kwargs}
            return super().optimize(
                n=n,
                search_space_digest=search_space_digest,
                inequality_constraints=inequality_constraints,
                equality_constraints=equality_constraints,
                fixed_features=fixed_features,
                rounding_func=rounding_func,
                optimizer_options=optimizer_options,
                candidate_set=candidate_set,
                sampling_strategy=sampling_strategy,
            )
        return self._best_of(n, points.to(device=self.device))

    def _best_of(self, n: int, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The best n points not observed or pending, picked one after another (among the
        points that pass the `screen`, unless the acquisition option `screen` is False)."""
        avoid: Sequence[Tensor] = [x for x in (self.X_observed, self.X_pending) if x is not None]
        X_avoid = torch.cat(list(avoid)) if avoid else None
        if self.options.get("screen", True):
            unseen = _unseen(points, X_avoid)
            if unseen.shape[0] > 0:
                points = screen(self.acqf, unseen)
        try:
            candidates, values = optimize_acqf_discrete(
                acq_function=self.acqf,
                q=n,
                choices=points,
                max_batch_size=BATCH,
                X_avoid=X_avoid,
            )
        except InputDataError:  # BoTorch: every point is already observed
            raise SearchSpaceExhausted(
                "every configuration of the search space has been evaluated"
            ) from None
        weights = torch.ones(candidates.shape[0], dtype=self.dtype)
        return candidates, values, weights


register_acquisition(ExhaustiveAcquisition)  # strategies that use it are saved and restored

__all__ = [
    "MAX_POINTS",
    "SCREEN_RANDOM",
    "SCREEN_TOP",
    "ExhaustiveAcquisition",
    "enumerate_choices",
    "enumerate_points",
    "expected_improvement",
    "screen",
]
