"""The typer application every command module registers on.

Each command lives in its own module (``cli/train.py``, ``cli/index.py``, ...) and does
``from ._app import app`` then ``@app.command()``; ``cli/__init__.py`` imports them all.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

try:
    from typer._click.exceptions import UsageError  # typer >= 0.26 vendors click
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

from ..errors import DeephashError


class _Group(TyperGroup):
    """Turns a DeephashError from any command (sub-apps included), and a command line that does not parse
    (``-k abc``, an unknown option), into one ``error:`` line and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeephashError as e:
            fail(str(e))
        except UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            fail(f"{e.format_message()}{hint}")


app = typer.Typer(
    cls=_Group,
    name="deephash",
    help="Learning to hash images (DSH, IAH) and fast search in Hamming space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: reads well at 80 columns
)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line to stderr and exit non-zero (no traceback): line breaks in ``message`` are folded,
    undecodable file-name bytes shown as \\xNN."""
    from ..utils.io import display_path

    typer.echo("error: " + " ".join(display_path(message).splitlines()), err=True)
    raise typer.Exit(code)
