"""One error module for nasop: every error carries a message and a hint that says the fix.

Modelled on Ax's `AxError(message, hint)`. Only `controller/` translates these into kopf errors.
"""

from __future__ import annotations


class NasopError(Exception):
    """Base of every nasop error."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class SpecError(NasopError):
    """The manifest is invalid; the message names the field."""


class MissingDependencyError(NasopError):
    """An optional dependency (e.g. jax and numpyro for SAASBO) is not installed."""


class StateConflict(NasopError):
    """A newer state was written by someone else; this writer is stale."""


class StateTooLarge(NasopError):
    """The experiment state no longer fits in its store (e.g. a 1 MiB ConfigMap)."""


class BackendUnavailable(NasopError):
    """A scheduler or API server is unreachable; retrying later may succeed."""


__all__ = [
    "BackendUnavailable",
    "MissingDependencyError",
    "NasopError",
    "SpecError",
    "StateConflict",
    "StateTooLarge",
]
