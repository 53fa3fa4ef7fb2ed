"""Command-line interface: ``deephash <command>``. Bad input ends in one ``error:`` line."""

from __future__ import annotations

import sys

from ..errors import DeephashError
from ._app import app, fail

# Command modules register themselves on ``app`` when imported.
from . import version as _version  # noqa: F401,E402
from . import evaluate as _evaluate  # noqa


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except DeephashError as e:
        typer_fail(str(e))


def typer_fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


__all__ = ["app", "fail", "main"]
