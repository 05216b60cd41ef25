"""Every exception a caller of mushroom_lib may catch, defined once, and how a user-facing message is cut.

A message a user can cause is one sentence of at most ``MAX_MESSAGE`` characters: ``one_line`` folds it onto
one line and cuts it with "…"; ``shorten`` cuts a value quoted inside a message.
"""

from __future__ import annotations

MAX_MESSAGE = 300   #: characters in one error or warning sentence
MAX_VALUE = 40      #: characters of a user's value quoted inside a message


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (runs of white space folded), cut to ``limit`` characters with "…"."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def shorten(value: object, limit: int = MAX_VALUE) -> str:
    """``repr(value)`` cut to ``limit`` characters with "…" (for quoting what a user sent)."""
    text = value[: limit + 1] if isinstance(value, str) else value
    return one_line(repr(text), limit)


class SchemaError(ValueError):
    """Input that does not fit the schema; the message names the row, column and value."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None,
                 value: object = None, problems: list[str] | None = None):
        message = one_line(message)
        super().__init__(message)
        self.row, self.column, self.value = row, column, value
        self.problems = [one_line(p) for p in problems] if problems else [message]


class DataError(RuntimeError):
    """The data could not be acquired or does not match what the project needs."""


class RegistryError(RuntimeError):
    """A version is missing, damaged, tampered with or unsafe to load."""


class NoChampionError(RuntimeError):
    """No model has been trained yet."""


class NotebookError(ValueError):
    """A notebook could not be found, was given a parameter it lacks, or failed (one-line message)."""


class MonitoringError(RuntimeError):
    """The report cannot be made at all (no model, no reference rows)."""


class MissingExtra(ImportError, ValueError):
    """An optional dependency is not installed (a ValueError too, so the CLI shows it as one plain line)."""


#: what the ``mushroom`` command shows as one line with exit status 2 (input or state a user can fix)
USER_ERRORS: tuple[type[BaseException], ...] = (SchemaError, DataError, RegistryError, NoChampionError,
                                                NotebookError, MonitoringError, ValueError, OSError)
