"""The typer application every command module registers on.

Each command lives in its own module (``cli/train.py``, ``cli/index.py``, ...) and does
``from ._app import app`` then ``@app.command()``; ``cli/__init__.py`` imports them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from typer.core import TyperGroup

try:
    from typer._click.exceptions import UsageError  # typer >= 0.26 vendors click
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

from ..errors import DeephashError, InvalidInputError


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


INDEX_ARG_HELP = "Index folder (deephash up, deephash index build); or give it as --index."
INDEX_OPT_HELP = "Index folder, the same as the argument."


def index_folder(argument, option, usage: str, other: str = "") -> Path:
    """The index folder a command was given as its argument or as ``--index``: every command that opens an
    index takes both spellings, so a user never has to remember which one. Giving it twice, or not at all, is
    an error that shows ``usage`` (e.g. ``deephash index info IDX``). A value that is not a path (a typer
    default, when the command is called as a function) counts as not given; ``other`` names another way in."""
    given = [Path(v) for v in (argument, option) if isinstance(v, (str, os.PathLike))]
    if len(given) == 2:
        raise InvalidInputError(f"the index folder is given twice ({given[0]} and --index {given[1]}): give it "
                                f"once, as in '{usage}' or with --index")
    if not given:
        raise InvalidInputError(f"missing the index folder: {usage} (or --index IDX{other})")
    return given[0]


def fail(message: str, code: int = 2) -> None:
    """Print one clear line to stderr and exit non-zero (no traceback): line breaks in ``message`` are folded,
    undecodable file-name bytes shown as \\xNN."""
    from ..utils.io import display_path

    typer.echo("error: " + " ".join(display_path(message).splitlines()), err=True)
    raise typer.Exit(code)
