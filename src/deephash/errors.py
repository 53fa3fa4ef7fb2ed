"""The one exception type users see: a clear message, never a deep traceback."""


class DeephashError(Exception):
    """Bad input or state that the user can fix; the CLI prints it and exits non-zero."""
