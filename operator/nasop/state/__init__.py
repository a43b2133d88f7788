"""Where an experiment's Ax state lives: a JSON file (local), a SQL database, a ConfigMap.

Stores share one small interface (`base.ExperimentStore`) and one contract test; they know the
Ax classes but not nasop's trials package: the engine passes the registry bundle in.
"""

from nasop.state import base, codec, files, sql

__all__ = ["base", "codec", "files", "sql", "open_store"]


def open_store(url: str, registry: object) -> base.ExperimentStore:
    """`sqlite:///x.db`, `postgresql://...` -> SQL store; anything else is a directory."""
    if "://" in url and not url.startswith("file://"):
        return sql.SQLStore(url, registry=registry)  # type: ignore[arg-type]
    return files.FileStore(url.removeprefix("file://"), registry=registry)  # type: ignore[arg-type]
