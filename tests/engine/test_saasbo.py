"""`optimizer.method: saasbo` proposes trials with Ax's fully Bayesian SAAS GP (needs pyro-ppl)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numpyro", reason="pip install 'nasop[saasbo]'")

from test_report import MANIFEST, synthetic

from synthetic_trials import SyntheticTrial, search_with_trials

pytestmark = pytest.mark.slow


def test_saasbo_fits_the_fully_bayesian_model_and_proposes_in_bounds(tmp_path: Any) -> None:
    data = {
        **MANIFEST,
        "spec": {
            **MANIFEST["spec"],
            "optimizer": {"method": "saasbo", "initialTrials": 5, "seed": 0},
            "budget": {"maxTrials": 8, "parallelism": 1},
        },
    }
    rng = np.random.default_rng(1)
    trials = []
    for _ in range(6):
        params = {
            "hidden_size_1": int(rng.integers(16, 129)),
            "hidden_size_2": int(rng.integers(16, 129)),
            "learning_rate": float(10 ** rng.uniform(-4, -2)),
        }
        trials.append(SyntheticTrial(params, synthetic(params)))
    search = search_with_trials(data, str(tmp_path), trials)
    start = time.perf_counter()
    (grs,) = search.strategy.gen(experiment=search.experiment, n=1, num_trials=1)
    seconds = time.perf_counter() - start
    search.close()
    gr = grs[0]
    assert gr._generation_node_name == "MBM" and "SAASBO" in search.strategy.name
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

    fitted = search.strategy._curr.generator_specs[0].fitted_adapter.generator.surrogate.model
    models = getattr(fitted, "models", [fitted])  # one GP per objective
    assert models and all(isinstance(m, SaasFullyBayesianSingleTaskGP) for m in models)
    arm = gr.arms[0]
    assert search.experiment.search_space.check_membership(arm.parameters)
    print(f"SAASBO generation step: {seconds:.1f} s")
