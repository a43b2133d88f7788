"""The trainer's errors: each maps to an exit code and prints as one line on stderr.

The operator records a failed trial's stderr, so a failure must say what was wrong and how to fix
it in one line, not as a traceback. Modelled on nasop's ``NasopError(message, hint)``.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base of every trainer error; ``exit_code`` is what the process exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(TrainerError):
    """A flag, parameter or value is invalid (exit code 2, like argparse)."""

    exit_code = 2


class DataMissingError(TrainerError):
    """The data set is not where it was looked for and cannot be downloaded (exit code 3)."""

    exit_code = 3


__all__ = ["DataMissingError", "TrainerError", "UsageError"]
