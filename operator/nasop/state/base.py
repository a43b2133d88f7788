"""The store interface: keyword-only load/save/delete of one experiment's snapshot."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from ax.core.experiment import Experiment
from ax.generation_strategy.generation_strategy import GenerationStrategy


@dataclass
class Snapshot:
    """An experiment and its generation strategy; nasop's own bookkeeping rides in
    `experiment._properties["nasop"]` so every backend stores it for free."""

    experiment: Experiment
    strategy: GenerationStrategy
    version: str | None = None  # backend's optimistic-concurrency token (e.g. resourceVersion)


class ExperimentStore(metaclass=abc.ABCMeta):
    """Persists snapshots; subclasses choose where."""

    @abc.abstractmethod
    def load(self, *, name: str) -> Snapshot | None:
        """The saved snapshot, or None when there is none."""

    @abc.abstractmethod
    def save(self, *, name: str, snapshot: Snapshot) -> None:
        """Write the snapshot; raises StateConflict if someone else wrote a newer one."""

    @abc.abstractmethod
    def delete(self, *, name: str) -> None:
        """Remove the snapshot; no error if absent."""

    def describe(self) -> str:
        return type(self).__name__


__all__ = ["ExperimentStore", "Snapshot"]
