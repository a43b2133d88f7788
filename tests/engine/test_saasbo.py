"""`optimizer.method: saasbo` proposes trials with Ax's fully Bayesian SAAS GP (needs pyro-ppl)."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("numpyro", reason="pip install 'nasop[saasbo]'")

from ax.core.arm import Arm  # noqa: E402
from ax.core.generator_run import GeneratorRun  # noqa: E402

from nasop import spec  # noqa: E402
from nasop.engine.search import Search  # noqa: E402
from nasop.trials.runner import TorchXTrialRunner  # noqa: E402
from test_report import MANIFEST, synthetic  # noqa: E402

pytestmark = pytest.mark.slow


def test_saasbo_fits_the_fully_bayesian_model_and_proposes_in_bounds(tmp_path: Any) -> None:
    data = {**MANIFEST, "spec": {**MANIFEST["spec"],
                                 "optimizer": {"method": "saasbo", "initialTrials": 5, "seed": 0},
                                 "budget": {"maxTrials": 8, "parallelism": 1}}}
    m = spec.parse_manifest(data)
    runner = TorchXTrialRunner(scheduler="local_cwd", template=m.spec.trial.dump(),
                               log_root=str(tmp_path), experiment_name=m.name)
    search = Search.open(m.spec, m.name, runner, store=None)
    import numpy as np
    import pandas as pd
    from ax.core.data import Data

    rng = np.random.default_rng(1)
    for _ in range(6):
        params = {"hidden_size_1": int(rng.integers(16, 129)),
                  "hidden_size_2": int(rng.integers(16, 129)),
                  "learning_rate": float(10 ** rng.uniform(-4, -2))}
        trial = search.experiment.new_trial(generator_run=GeneratorRun(arms=[Arm(params)]))
        trial.mark_running(no_runner_required=True)
        search.experiment.attach_data(Data(df=pd.DataFrame([
            {"trial_index": trial.index, "arm_name": trial.arm.name, "metric_name": k,
             "metric_signature": k, "mean": v, "sem": float("nan")}
            for k, v in synthetic(params).items()])))
        trial.mark_completed()
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
