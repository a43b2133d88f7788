"""Every store round-trips an experiment with trials, data and the generation strategy."""

from __future__ import annotations

import os

import pytest
from ax.core.base_trial import TrialStatus

from nasop.state import codec, files, open_store, sql
from nasop.state.base import Snapshot
from nasop.trials import registry
from nasop.trials.metric import TrialMetric
from nasop.trials.runner import TorchXTrialRunner
from stubs import manifest
from synthetic_trials import SyntheticTrial, search_with_trials


def _file(tmp_path):
    return files.FileStore(str(tmp_path / "state"), registry=registry.bundle())


def _sqlite(tmp_path):
    return sql.SQLStore(f"sqlite:///{tmp_path}/nasop.db", registry=registry.bundle())


ALL_STORES = [_file, _sqlite]


def _search(tmp_path, name="contract"):
    s = search_with_trials(
        manifest(name),
        str(tmp_path / "logs"),
        [
            SyntheticTrial(
                {
                    "hidden_size_1": h1,
                    "hidden_size_2": 16,
                    "learning_rate": 0.001,
                    "dropout": 0.1,
                    "batch_size": 64,
                    "epochs": 2,
                },
                {"val_acc": [acc], "num_params": [n]},
                run_metadata={"app_handle": f"local_cwd://nasop/x-{i}", "tb_log_dir": f"/l/{i}"},
            )
            for i, (h1, acc, n) in enumerate(
                [(16, 0.8, 1000.0), (32, 0.9, 3000.0), (64, 0.7, 500.0)]
            )
        ],
    )
    s.state.reasons[9] = "why"
    return s


@pytest.mark.parametrize("make_store", ALL_STORES)
def test_round_trip(tmp_path, make_store):
    store = make_store(tmp_path)
    s = _search(tmp_path)
    assert store.load(name="contract") is None
    store.save(name="contract", snapshot=s.snapshot())
    back = store.load(name="contract")
    assert back is not None
    e = back.experiment
    assert sorted(e.trials) == [0, 1, 2]
    assert all(t.status is TrialStatus.COMPLETED for t in e.trials.values())
    assert e.trials[1].run_metadata["app_handle"] == "local_cwd://nasop/x-1"
    assert isinstance(e.metrics["val_acc"], TrialMetric)
    assert isinstance(e.runner, TorchXTrialRunner) and e.runner.experiment_name == "contract"
    df = e.lookup_data().df
    assert len(df) == 6 and set(df["metric_name"]) == {"val_acc", "num_params"}
    assert e._properties["nasop"]["reasons"] == {"9": "why"}
    assert [n.name for n in back.strategy._nodes] == ["Sobol", "MBM"]
    # saving again (an update, not an insert) works too
    store.save(name="contract", snapshot=back)
    assert len(store.load(name="contract").experiment.trials) == 3
    store.delete(name="contract")
    assert store.load(name="contract") is None
    store.delete(name="contract")  # idempotent


def test_codec_gzip_round_trip(tmp_path):
    s = _search(tmp_path)
    raw = codec.to_bytes(Snapshot(s.experiment, s.strategy), registry.bundle(), compress=True)
    assert raw[:2] == b"\x1f\x8b"
    back = codec.from_bytes(raw, registry.bundle())
    assert len(back.experiment.trials) == 3


def test_open_store_dispatch(tmp_path):
    assert isinstance(open_store(str(tmp_path), registry.bundle()), files.FileStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path}/x.db", registry.bundle()), sql.SQLStore)


def test_file_store_write_is_atomic(tmp_path, monkeypatch):
    store = _file(tmp_path)
    s = _search(tmp_path)
    store.save(name="contract", snapshot=s.snapshot())
    s.state.reasons[0] = "changed"  # the core changes: the next save rewrites it

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(RuntimeError):
        store.save(name="contract", snapshot=s.snapshot())
    assert len(_file(tmp_path).load(name="contract").experiment.trials) == 3
    assert not [f for f in os.listdir(tmp_path / "state") if f.endswith(".tmp")]
