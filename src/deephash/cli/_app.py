"""The typer application every command module registers on.

Each command lives in its own module (``cli/train.py``, ``cli/index.py``, ...) and does
``from ._app import app`` then ``@app.command()``; ``cli/__init__.py`` imports them all.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="deephash",
    help="Learning to hash images (DSH, IAH) and fast search in Hamming space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line to stderr and exit non-zero (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
