"""A store that holds one snapshot already read and never writes: `nasop status` and
`nasop report` open a search on it to look at the saved state without changing it."""

from __future__ import annotations

from nasop.state.base import ExperimentStore, Snapshot


class ReadOnlyStore(ExperimentStore):
    """Loads the snapshot it was given; saving and deleting do nothing."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def load(self, *, name: str) -> Snapshot | None:
        return self.snapshot

    def save(self, *, name: str, snapshot: Snapshot) -> None:
        pass

    def delete(self, *, name: str) -> None:
        pass


__all__ = ["ReadOnlyStore"]
