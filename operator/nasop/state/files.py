"""A directory of JSON files per experiment, each written atomically (temp file + rename).

`<name>.json` is the core document and `<name>.chunks/<key>.json` the sealed chunks of trials
(layout.py): a save rewrites the core, small, and adds a chunk file when 100 more trials have
ended, so a 10,000-trial search does not rewrite one file of every trial after each of them.
A `<name>.json` of the first format (the whole snapshot in one file) still loads; the first
save after it writes the new layout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from ax.storage.registry_bundle import RegistryBundleBase

from nasop import errors
from nasop.state import layout
from nasop.state.base import ExperimentStore, Snapshot


class FileStore(ExperimentStore):
    """`<dir>/<name>.json` and `<dir>/<name>.chunks/`; a crash mid-write leaves the previous
    state intact (a chunk is written before the core that names it)."""

    def __init__(
        self,
        directory: str,
        *,
        registry: RegistryBundleBase,
        chunk_trials: int = layout.CHUNK_TRIALS,
    ) -> None:
        self.directory = directory
        self.registry = registry
        self.chunk_trials = chunk_trials
        self.written: dict[str, layout.Written] = {}
        self.writes = 0  # files written by this store (the tests and bench/scale.py count them)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, f"{name}.json")

    def chunk_path(self, name: str, key: str) -> str:
        return os.path.join(self.directory, f"{name}.chunks", f"{key}.json")

    def load(self, *, name: str) -> Snapshot | None:
        try:
            with open(self.path(name), "rb") as fh:
                core = layout.from_bytes(fh.read())
        except FileNotFoundError:
            return None
        chunks: dict[str, dict[str, Any]] = {}
        for key in layout.chunk_keys(core) if layout.is_core(core) else []:
            try:
                with open(self.chunk_path(name, key), "rb") as fh:
                    chunks[key] = layout.from_bytes(fh.read())
            except FileNotFoundError as e:
                raise errors.NasopError(
                    f"the state of {name!r} names chunk {key}, which is missing",
                    hint=f"restore {os.path.dirname(self.chunk_path(name, key))} from a backup",
                ) from e
        snapshot, self.written[name] = layout.load_document(core, chunks, self.registry)
        return snapshot

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        plan = layout.split(snapshot, self.registry, self.written.get(name), self.chunk_trials)
        for key, doc in plan.chunks.items():
            path = self.chunk_path(name, key)
            if not os.path.exists(path):  # named by its content: an existing one is the same
                self._write(path, layout.to_bytes(doc))
        if plan.core_changed or not os.path.exists(self.path(name)):
            self._write(self.path(name), layout.to_bytes(plan.core))
        self.written[name] = plan.written

    def _write(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.writes += 1

    def delete(self, *, name: str) -> None:
        self.written.pop(name, None)
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass
        shutil.rmtree(os.path.join(self.directory, f"{name}.chunks"), ignore_errors=True)

    def describe(self) -> str:
        return f"file store {self.directory}"


__all__ = ["FileStore"]
