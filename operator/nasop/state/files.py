"""A directory of JSON files, one per experiment, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import tempfile

from ax.storage.registry_bundle import RegistryBundleBase

from nasop.state import codec
from nasop.state.base import ExperimentStore, Snapshot


class FileStore(ExperimentStore):
    """`<dir>/<name>.json`; a crash mid-write leaves the previous file intact."""

    def __init__(self, directory: str, *, registry: RegistryBundleBase) -> None:
        self.directory = directory
        self.registry = registry

    def path(self, name: str) -> str:
        return os.path.join(self.directory, f"{name}.json")

    def load(self, *, name: str) -> Snapshot | None:
        try:
            with open(self.path(name), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return codec.from_bytes(data, self.registry)

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        os.makedirs(self.directory, exist_ok=True)
        data = codec.to_bytes(snapshot, self.registry)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def delete(self, *, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    def describe(self) -> str:
        return f"file store {self.directory}"


__all__ = ["FileStore"]
