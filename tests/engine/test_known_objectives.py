"""Known objectives in the acquisition (generators/known.py, strategy.use_known_objectives)."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.model import ModelList

from nasop import spec
from nasop.engine import experiment, strategy
from nasop.generators import exhaustive, known
from nasop.state import codec
from nasop.state.base import Snapshot
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial

OPS = ["a", "b", "c"]


def _size(p):
    return float(p["w"] * p["d"] + 3 * OPS.index(p["op"]))


def _score(p):
    acc = math.log(p["w"]) + 0.5 * p["d"] + 0.2 * OPS.index(p["op"])
    return {"acc": acc, "size": _size(p)}


def _discrete_spec(expression=None):
    size = {"metric": "size", "goal": "minimize", "threshold": 100.0}
    if expression:
        size["expression"] = expression
    m = manifest(
        searchSpace=[
            {"name": "w", "type": "choice", "values": [1, 2, 4, 8], "ordered": False},
            {"name": "d", "type": "int", "bounds": [1, 4]},
            {"name": "op", "type": "choice", "values": OPS, "ordered": False},
        ],
        objectives=[{"metric": "acc", "goal": "maximize", "threshold": 0.0}, size],
        optimizer={"initialTrials": 4, "seed": 0},
        budget={"maxTrials": 20, "parallelism": 2},
    )
    return spec.parse_manifest(m).spec


def _seeded(s, cells):
    exp = experiment.experiment_from_spec(s, "x", None)
    for w, d, op in cells:
        params = {"w": w, "d": d, "op": op}
        add_trial(exp, SyntheticTrial(params, _score(params)))
    return exp


CELLS = [(1, 1, "a"), (2, 3, "b"), (8, 2, "c"), (4, 4, "a"), (1, 4, "c")]


def _features(feature_names, w, d, op):
    row = []
    for name in feature_names:
        if name.startswith("w_OH_PARAM_"):
            row.append(float([1, 2, 4, 8][int(name.rsplit("_", 1)[1])] == w))
        elif name.startswith("op_OH_PARAM_"):
            row.append(float(int(name.rsplit("_", 1)[1]) == OPS.index(op)))
        else:
            row.append(float(d))
    return row


def test_acquisition_model_is_exact_for_the_known_objective(monkeypatch):
    """The acquisition's model for `size` is deterministic and returns the function's values,
    standardised as Ax standardised the reported ones; the GP stays for `acc`."""
    s = _discrete_spec()
    exp = _seeded(s, CELLS)
    gs = strategy.strategy_from_spec(s)
    strategy.use_known_objectives(gs, functions={"size": lambda p: p["w"] * p["d"] + 3 * p["op"]})
    seen = {}
    original = exhaustive.ExhaustiveAcquisition._construct_botorch_acquisition

    def spy(self, botorch_acqf_class, botorch_acqf_options, model):
        acqf = original(self, botorch_acqf_class, botorch_acqf_options, model)
        seen["acqf"], seen["names"] = acqf, self.search_space_digest.feature_names
        return acqf

    monkeypatch.setattr(exhaustive.ExhaustiveAcquisition, "_construct_botorch_acquisition", spy)
    ((gr,),) = gs.gen(experiment=exp, n=1, num_trials=1)
    model = seen["acqf"].model
    assert isinstance(model, ModelList) and isinstance(model.models[1], GenericDeterministicModel)
    assert not isinstance(model.models[0], GenericDeterministicModel)
    sizes = torch.tensor([_size({"w": w, "d": d, "op": op}) for w, d, op in CELLS])
    mean, std = sizes.mean(), sizes.std()  # Ax's StandardizeY (Bessel-corrected)
    grid = [(w, d, op) for w in (1, 2, 4, 8) for d in (1, 2, 3, 4) for op in OPS]
    X = torch.tensor([_features(seen["names"], *c) for c in grid], dtype=torch.double)
    got = model.models[1].posterior(X).mean.squeeze(-1).reshape(-1)
    want = (torch.tensor([_size({"w": w, "d": d, "op": op}) for w, d, op in grid]) - mean) / std
    assert torch.allclose(got, want.to(got), atol=1e-9)
    assert gr.arms  # and a proposal came out


def test_expression_from_the_manifest_proposes_valid_new_points():
    """A short real run: the manifest's expression survives a save and reload, and the model
    node proposes configurations of the space that were not tried."""
    s = _discrete_spec(expression="w * d + 1")
    exp = _seeded(s, CELLS)
    gs = strategy.strategy_from_spec(s)
    kwargs = gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert kwargs["transforms"][-1] is known.KnownObjectives
    assert kwargs["transform_configs"][known.CONFIG_KEY] == {"expressions": {"size": "w * d + 1"}}
    snap = Snapshot(experiment.experiment_from_spec(s, "x", None), gs)
    gs = codec.from_bytes(codec.to_bytes(snap, registry.bundle()), registry.bundle()).strategy
    tried = {tuple(t.arms[0].parameters[k] for k in ("w", "d", "op")) for t in exp.trials.values()}
    for _ in range(3):
        ((gr,),) = gs.gen(experiment=exp, n=1, num_trials=1)
        p = gr.arms[0].parameters
        cell = (p["w"], p["d"], p["op"])
        assert p["w"] in (1, 2, 4, 8) and 1 <= p["d"] <= 4 and p["op"] in OPS
        assert cell not in tried
        tried.add(cell)
        t = exp.new_trial(generator_run=gr)
        t.mark_running(no_runner_required=True)
    assert gr._generation_node_name == "MBM"


def test_continuous_space_with_a_known_size(monkeypatch):
    """The tutorial's space (floats, log-scale ints): Ax's optimiser on the exact size, which
    the deterministic model computes from log10 features at the observed points."""
    m = manifest(optimizer={"initialTrials": 4, "seed": 0})
    m["spec"]["objectives"][1]["expression"] = "784*hidden_size_1 + hidden_size_1*hidden_size_2"
    s = spec.parse_manifest(m).spec
    exp = experiment.experiment_from_spec(s, "x", None)
    cells = [(16, 16, 0.8), (32, 64, 0.9), (64, 16, 0.93), (128, 128, 0.95)]
    for h1, h2, acc in cells:
        params = {"hidden_size_1": h1, "hidden_size_2": h2, "learning_rate": 1e-3}
        params |= {"dropout": 0.1, "batch_size": 64, "epochs": 2}
        size = 784.0 * h1 + h1 * h2
        add_trial(exp, SyntheticTrial(params, {"val_acc": acc, "num_params": size}))
    gs = strategy.strategy_from_spec(s)
    seen = {}
    original = exhaustive.ExhaustiveAcquisition._construct_botorch_acquisition

    def spy(self, botorch_acqf_class, botorch_acqf_options, model):
        seen["acqf"] = original(self, botorch_acqf_class, botorch_acqf_options, model)
        seen["X"] = self.X_observed
        return seen["acqf"]

    monkeypatch.setattr(exhaustive.ExhaustiveAcquisition, "_construct_botorch_acquisition", spy)
    (grs,) = gs.gen(experiment=exp, n=1, num_trials=1)
    p = grs[0].arms[0].parameters
    assert 16 <= p["hidden_size_1"] <= 128 and 1e-4 <= p["learning_rate"] <= 1e-2
    sizes = torch.tensor([784.0 * h1 + h1 * h2 for h1, h2, _ in cells], dtype=torch.double)
    (exact,) = [m for m in seen["acqf"].model.models if isinstance(m, GenericDeterministicModel)]
    got = exact.posterior(seen["X"]).mean.reshape(-1)
    got = got * sizes.std() + sizes.mean()  # undo Ax's standardisation
    assert sorted(got.tolist()) == pytest.approx(sorted(sizes.tolist()), rel=1e-9)


def test_no_known_objective_leaves_the_strategy_as_it_was():
    s = _discrete_spec()
    plain = strategy.strategy_from_spec(s).nodes_by_name["MBM"].generator_specs[0]
    assert known.KnownObjectives not in plain.generator_kwargs["transforms"]
    assert known.CONFIG_KEY not in (plain.generator_kwargs.get("transform_configs") or {})
    gs = strategy.strategy_from_spec(_discrete_spec("w * d"))
    strategy.use_known_objectives(gs)  # empty: removed again
    again = gs.nodes_by_name["MBM"].generator_specs[0].generator_kwargs
    assert again["transforms"] == plain.generator_kwargs["transforms"]
    assert known.CONFIG_KEY not in again["transform_configs"]


@pytest.mark.parametrize("log", [False, True])
def test_decoder_undoes_log_and_one_hot(log):
    codes = {
        "h": known.ParameterCode("feature", ("h",), log10=log),
        "c": known.ParameterCode("one_hot", ("c_OH_PARAM_0", "c_OH_PARAM_1"), (3.0, 5.0)),
        "k": known.ParameterCode("fixed", values=(7.0,)),
    }
    decode = known.Decoder(codes, ["c_OH_PARAM_0", "h", "c_OH_PARAM_1"])
    X = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]], dtype=torch.double)
    out = decode(X)
    h = torch.tensor([[100.0, 10.0]] if log else [[2.0, 1.0]], dtype=torch.double)
    assert torch.equal(out["h"], h)
    assert torch.equal(out["c"], torch.tensor([[3.0, 5.0]], dtype=torch.double))
    assert torch.equal(out["k"], torch.full((1, 2), 7.0, dtype=torch.double))
