"""Errors users see: a clear message naming the culprit, never a deep traceback.

Every error is a ``DeephashError`` (the CLI prints it as one ``error:`` line and exits 2) and, by kind, also
the matching built-in, so callers can catch what they know (``ValueError``, ``LookupError``,
``FileNotFoundError``) and a service can answer with the right HTTP status (``status``).
"""


class DeephashError(Exception):
    """Bad input or state that the user can fix."""

    status = 400  # HTTP status a service answers with


class InvalidInputError(DeephashError, ValueError):
    """An argument, option, setting or input value that is not allowed (wrong type, range, shape, name)."""

    status = 422


class NotFoundError(DeephashError, LookupError):
    """Something asked for that does not exist in what holds it: an id in an index, a split of a dataset. (A name
    that is not one of a fixed set of choices, such as an unknown model or engine, is invalid input.)"""

    status = 404


class MissingFileError(NotFoundError, FileNotFoundError):
    """A file or folder that does not exist."""


class CorruptFileError(DeephashError, ValueError):
    """A file that exists but cannot be read as what it claims to be (truncated, altered, wrong format)."""

    status = 422


class IncompatibleError(DeephashError, ValueError):
    """Valid things that do not fit together: code lengths, models, formats or settings that differ."""

    status = 409


class UnavailableError(DeephashError, ConnectionError):
    """A service deephash depends on (e.g. a Milvus server holding an index's codes) cannot be reached."""

    status = 503


__all__ = ["CorruptFileError", "DeephashError", "IncompatibleError", "InvalidInputError", "MissingFileError",
           "NotFoundError", "UnavailableError"]
