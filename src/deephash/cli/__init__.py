"""Command-line interface: ``deephash <command>``. Bad input ends in one ``error:`` line."""

from __future__ import annotations

from ._app import app, fail

# Command modules register themselves on ``app`` when imported.
from . import demo, dupes, encode, evaluate, iah, index, search, serve, train, up, version  # noqa: F401,E402


def main(argv: list[str] | None = None) -> None:
    app(args=argv, standalone_mode=True)


__all__ = ["app", "fail", "main"]
