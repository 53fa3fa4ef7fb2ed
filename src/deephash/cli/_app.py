"""The typer application every command module registers on.

Each command lives in its own module (``cli/train.py``, ``cli/index.py``, ...) and does
``from ._app import app`` then ``@app.command()``; ``cli/__init__.py`` imports them all.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ..errors import DeephashError


class _Group(TyperGroup):
    """Turns a DeephashError from any command (sub-apps included) into one ``error:`` line and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeephashError as e:
            fail(str(e))


app = typer.Typer(
    cls=_Group,
    name="deephash",
    help="Learning to hash images (DSH, IAH) and fast search in Hamming space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line to stderr and exit non-zero (no traceback); line breaks in ``message`` are folded."""
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    raise typer.Exit(code)
