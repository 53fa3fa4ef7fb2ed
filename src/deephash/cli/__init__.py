"""Command-line interface: ``deephash <command>``. Bad input ends in one ``error:`` line."""

from __future__ import annotations

import sys

from ..errors import DeephashError
from ._app import app, fail

# Command modules register themselves on ``app`` when imported.
from . import demo, encode, evaluate, iah, index, search, train, version  # noqa: F401,E402


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except DeephashError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "fail", "main"]
