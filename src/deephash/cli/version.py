from __future__ import annotations

import typer

from .. import __version__
from ._app import app


@app.command()
def version() -> None:
    """Print the deephash version."""
    typer.echo(__version__)
