"""The trainer's errors: each maps to an exit code and prints as one line on stderr.

The operator records a failed trial's stderr, so a failure must say what was wrong and how to fix
it in one line, not as a traceback. They are nasop's ``NasopError(message, hint)`` (the same
distribution ships both packages) with an exit code.
"""

from __future__ import annotations

from nasop.errors import NasopError


class TrainerError(NasopError):
    """Base of every trainer error; ``exit_code`` is what the process exits with."""

    exit_code = 1


class UsageError(TrainerError):
    """A flag, parameter or value is invalid (exit code 2, like argparse)."""

    exit_code = 2


class DataMissingError(TrainerError):
    """The data set is not where it was looked for and cannot be downloaded (exit code 3)."""

    exit_code = 3


__all__ = ["DataMissingError", "TrainerError", "UsageError"]
