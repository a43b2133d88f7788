"""Shared builders for tests: manifests that run the fake trainer (an Ax experiment or a Search
with synthetic trials: synthetic_trials.py)."""

from __future__ import annotations

import copy
import os
import sys
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_TRAINER = os.path.join(HERE, "fake_trainer.py")

BASE: dict[str, Any] = yaml.safe_load(
    """
apiVersion: nasop.dev/v1alpha1
kind: NASExperiment
metadata: {name: unit}
spec:
  searchSpace:
    - {name: hidden_size_1, type: int,   bounds: [16, 128], log: true}
    - {name: hidden_size_2, type: int,   bounds: [16, 128], log: true}
    - {name: learning_rate, type: float, bounds: [1.0e-4, 1.0e-2], log: true}
    - {name: dropout,       type: float, bounds: [0.0, 0.5]}
    - {name: batch_size,    type: choice, values: [32, 64, 128, 256], ordered: true}
    - {name: epochs,        type: fixed, value: 2}
  objectives:
    - {metric: val_acc,    goal: maximize, threshold: 0.5}
    - {metric: num_params, goal: minimize, threshold: 20000}
  budget: {maxTrials: 6, parallelism: 2, maxFailedTrials: 1}
  optimizer: {initialTrials: 4, seed: 0}
  trial:
    command: [python, FAKE]
"""
)


def manifest(name: str = "unit", **spec_overrides: Any) -> dict[str, Any]:
    """A valid manifest dict that runs the fake trainer; overrides replace spec keys."""
    m = copy.deepcopy(BASE)
    m["metadata"]["name"] = name
    m["spec"]["trial"]["command"] = [sys.executable, FAKE_TRAINER]
    m["spec"].update(copy.deepcopy(spec_overrides))
    return m


def write_manifest(path: str, data: dict[str, Any]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return path
