"""The warm-starting surrogate: each refit starts from the last fit's hyperparameters, keeps the
new data's transforms, and the strategy holding it survives saved state."""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize

from nasop import spec
from nasop.engine import experiment, strategy
from nasop.generators.surrogate import WarmStartSurrogate, copy_hyperparameters, fit_botorch_model
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial


def _gp(n: int, seed: int) -> SingleTaskGP:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.double)
    y = (x.sum(-1, keepdim=True) * 100 + 5).to(torch.double)
    return SingleTaskGP(x, y, outcome_transform=Standardize(m=1))


def test_copy_hyperparameters_copies_learned_values_and_keeps_transforms():
    old, new = _gp(8, 0), _gp(12, 1)
    with torch.no_grad():
        old.covar_module.raw_lengthscale.fill_(1.7)
        old.likelihood.noise_covar.raw_noise.fill_(-3.0)
    means_before = new.outcome_transform.means.clone()
    assert copy_hyperparameters(old, new) == len(list(new.named_parameters()))
    assert torch.allclose(
        new.covar_module.raw_lengthscale, torch.full((1, 3), 1.7, dtype=torch.double)
    )
    assert torch.equal(new.likelihood.noise_covar.raw_noise, old.likelihood.noise_covar.raw_noise)
    # the outcome transform still standardises the new data, not the old
    assert torch.equal(new.outcome_transform.means, means_before)
    assert not torch.equal(new.outcome_transform.means, old.outcome_transform.means)


def test_copy_hyperparameters_skips_mismatched_models():
    old = _gp(8, 0)
    other = SingleTaskGP(torch.rand(6, 4, dtype=torch.double), torch.rand(6, 1, dtype=torch.double))
    lengthscale = other.covar_module.raw_lengthscale.clone()
    copy_hyperparameters(old, other)  # lengthscale shapes differ (3 vs 4 inputs)
    assert torch.equal(other.covar_module.raw_lengthscale, lengthscale)


def _complete(exp, i, h1, acc):
    add_trial(
        exp,
        SyntheticTrial(
            {
                "hidden_size_1": h1,
                "hidden_size_2": 16 + i,
                "learning_rate": 1e-3,
                "dropout": 0.1 + 0.01 * i,
                "batch_size": 64,
                "epochs": 2,
            },
            {"val_acc": [acc], "num_params": [float(784 * h1 + 170 + i)]},
        ),
    )


def test_each_refit_starts_from_the_previous_fit(monkeypatch):
    """The model handed to BoTorch's fit already holds the previous fit's hyperparameters."""
    s = spec.parse_manifest(manifest(optimizer={"initialTrials": 4, "seed": 0})).spec
    exp = experiment.experiment_from_spec(s, "x", None)
    gs = strategy.strategy_from_spec(s)
    gen_spec = gs.nodes_by_name["MBM"].generator_specs[0]
    surrogate = gen_spec.generator_kwargs["surrogate"]
    assert (
        isinstance(surrogate, WarmStartSurrogate)
        and "surrogate_spec" not in gen_spec.generator_kwargs
    )

    starts: list[dict[str, torch.Tensor]] = []
    fit = fit_botorch_model

    def record_start(model, **kw):
        starts.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return fit(model, **kw)

    monkeypatch.setattr("nasop.generators.surrogate.fit_botorch_model", record_start)
    for i, (h1, acc) in enumerate(zip([16, 32, 64, 128, 256], [0.8, 0.9, 0.93, 0.95, 0.96])):
        _complete(exp, i, h1, acc)
    (grs,) = gs.gen(experiment=exp, n=1, num_trials=1)  # first model fit: cold, Ax's own path
    assert grs[0]._generation_node_name == "MBM" and starts == []
    fitted = {k: v.detach().clone() for k, v in surrogate.model.named_parameters()}
    _complete(exp, 5, 200, 0.955)
    gs.gen(experiment=exp, n=1, num_trials=1)
    assert len(starts) == 1  # one batched GP for both outcomes, started warm
    assert starts[0].keys() == fitted.keys()
    for name, value in fitted.items():
        assert torch.equal(starts[0][name], value), name


def test_strategy_with_warm_surrogate_survives_saved_state():
    s = spec.parse_manifest(manifest()).spec
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), strategy.strategy_from_spec(s))
    back = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle())
    kwargs = back.strategy.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert isinstance(kwargs["surrogate"], WarmStartSurrogate)
    assert (
        kwargs["surrogate"].surrogate_spec
        == snap.strategy.nodes_by_name["MBM"]
        .generator_specs[0]
        .generator_kwargs["surrogate"]
        .surrogate_spec
    )


def test_a_state_saved_before_warm_start_resumes_with_it(tmp_path):
    """A strategy stored by an older nasop (Ax's plain surrogate spec) gains the warm-starting
    surrogate when its search is resumed."""
    from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
    from ax.api.utils.structs import GenerationStrategyDispatchStruct

    from nasop.engine.search import PROPS, Search
    from nasop.state.files import FileStore
    from nasop.trials.runner import TorchXTrialRunner

    m = spec.parse_manifest(manifest("older"))
    exp = experiment.experiment_from_spec(m.spec, m.name, None)
    exp._properties[PROPS] = {"fingerprint": m.spec.search_fingerprint()}
    old_gs = choose_generation_strategy(GenerationStrategyDispatchStruct(method="fast"))
    assert "surrogate" not in old_gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    store = FileStore(str(tmp_path / "state"), registry=registry.bundle())
    store.save(name=m.name, snapshot=Snapshot(exp, old_gs))

    runner = TorchXTrialRunner(
        scheduler="local_cwd",
        template=m.spec.trial.dump(),
        log_root=str(tmp_path),
        experiment_name=m.name,
    )
    search = Search.open(m.spec, m.name, runner, store=store)
    try:
        kwargs = search.strategy.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
        assert (
            isinstance(kwargs["surrogate"], WarmStartSurrogate) and "surrogate_spec" not in kwargs
        )
    finally:
        search.close()
