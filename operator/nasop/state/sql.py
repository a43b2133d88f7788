"""Ax's own SQL storage (SQLAlchemy) behind the store interface, for users who want a database."""

from __future__ import annotations

from ax.exceptions.core import ObjectNotFoundError
from ax.storage.registry_bundle import RegistryBundleBase
from ax.storage.sqa_store.db import create_all_tables, get_engine, init_engine_and_session_factory
from ax.storage.sqa_store.delete import delete_experiment
from ax.storage.sqa_store.load import (
    load_experiment,
    load_generation_strategy_by_experiment_name,
)
from ax.storage.sqa_store.save import save_experiment, save_generation_strategy
from ax.storage.sqa_store.sqa_config import SQAConfig

from nasop.state.base import ExperimentStore, Snapshot


class SQLStore(ExperimentStore):
    """Any SQLAlchemy URL Ax supports (tested with SQLite)."""

    def __init__(self, url: str, *, registry: RegistryBundleBase) -> None:
        self.url = url
        self.registry = registry
        init_engine_and_session_factory(url=url, force_init=True)
        create_all_tables(get_engine())

    @property
    def _config(self) -> SQAConfig:
        return self.registry.sqa_config

    def load(self, *, name: str) -> Snapshot | None:
        try:
            experiment = load_experiment(name, config=self._config)
        except ObjectNotFoundError:
            return None
        strategy = load_generation_strategy_by_experiment_name(
            name, config=self._config, experiment=experiment
        )
        return Snapshot(experiment=experiment, strategy=strategy)

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        save_experiment(snapshot.experiment, config=self._config)
        if snapshot.strategy._experiment is None:  # a strategy that has not generated yet
            snapshot.strategy.experiment = snapshot.experiment
        save_generation_strategy(snapshot.strategy, config=self._config)

    def delete(self, *, name: str) -> None:
        try:
            delete_experiment(name)
        except Exception:  # absent: nothing to delete
            pass

    def describe(self) -> str:
        return f"SQL store {self.url}"


__all__ = ["SQLStore"]
