"""Builders for the state tests: searches whose trials have 20-epoch curves on three metrics, and
the equality the stores promise (Ax's own JSON round trip of the same snapshot)."""

from __future__ import annotations

import pathlib

from ax.core.base_trial import TrialStatus

from nasop.state import codec
from nasop.trials import registry
from stubs import manifest
from synthetic_trials import SyntheticTrial, add_trial, search_with_trials

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "v1-configmap-state.json.gz"
METRICS = ("val_acc", "num_params", "val_loss")
ENDS = [TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.EARLY_STOPPED]


def new_search(tmp_path, name="split"):
    return search_with_trials(
        manifest(name, outcomeConstraints=["val_loss <= 10"]), str(tmp_path / "logs")
    )


def grow(search, n, rnd, status=TrialStatus.COMPLETED, epochs=20):
    """n trials with `epochs`-point curves on three metrics, proposed by the strategy (its
    generator runs are the trials' own, as in a real search), each with a reason."""
    out = []
    for _ in range(n):
        trial = SyntheticTrial(
            {
                "hidden_size_1": rnd.randint(16, 128),
                "hidden_size_2": 16,
                "learning_rate": 0.001,
                "dropout": 0.1,
                "batch_size": 64,
                "epochs": 2,
            },
            {m: [rnd.random() for _ in range(epochs)] for m in METRICS},
            status=status,
            reason="OOMKilled" if status is TrialStatus.FAILED else None,
        )
        index = add_trial(search.experiment, trial)
        search.strategy._generator_runs.append(search.experiment.trials[index].generator_run)
        search.state.reasons[index] = f"{status.name.lower()} #{index}"
        out.append(index)
    return out


def ax_round_trip(snapshot):
    return codec.from_bytes(codec.to_bytes(snapshot, registry.bundle()), registry.bundle())


def assert_equal(back, snapshot):
    """`back` equals Ax's own round trip of `snapshot`, and its strategy's runs are its trials'."""
    ref = ax_round_trip(snapshot)
    assert back.experiment == ref.experiment
    assert back.experiment.data == ref.experiment.data
    assert back.strategy == ref.strategy
    assert back.experiment._properties == ref.experiment._properties
    trial_runs = {id(t.generator_run) for t in back.experiment.trials.values()}
    assert all(id(gr) in trial_runs for gr in back.strategy._generator_runs)
