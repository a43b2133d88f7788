"""Where an experiment's Ax state lives: a JSON file (local), a SQL database, a ConfigMap.

Stores share one small interface (`base.ExperimentStore`) and one contract test; they know the
Ax classes but not nasop's trials package: the engine passes the registry bundle in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasop.state import base, codec, files, sql

if TYPE_CHECKING:
    from ax.storage.registry_bundle import RegistryBundleBase

__all__ = ["base", "codec", "files", "open_store", "sql"]


def open_store(url: str, registry: RegistryBundleBase) -> base.ExperimentStore:
    """`sqlite:///x.db`, `postgresql://...` -> SQL store; anything else is a directory."""
    if "://" in url and not url.startswith("file://"):
        return sql.SQLStore(url, registry=registry)
    return files.FileStore(url.removeprefix("file://"), registry=registry)
