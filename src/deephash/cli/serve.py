"""``deephash serve``: parse options, hand them to ``deephash.service``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InvalidInputError
from ._app import INDEX_ARG_HELP, INDEX_OPT_HELP, app, index_folder


@app.command()
def serve(
    index_dir: Optional[Path] = typer.Argument(None, metavar="INDEX", help=INDEX_ARG_HELP, show_default=False),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: Optional[str] = typer.Option(None, envvar="DEEPHASH_TOKEN", show_envvar=True,
                                        help="Bearer token that adding and removing images need (without one the "
                                             "server is read-only)."),
    max_upload_mb: float = typer.Option(20.0, help="Largest request body accepted, in MB (413 above)."),
    workers: int = typer.Option(1, help="Server processes, each holding the index (a write by one reaches the "
                                        "others within about a second)."),
    allow_root: Optional[Path] = typer.Option(None, help="Folder whose files POST /v1/items may add by path."),
    access_log: bool = typer.Option(True, help="Log one line per request (off: less work per request)."),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
) -> None:
    """Serve an index: a JSON API under /v1 (docs at /docs), /metrics and a search page at /.

    Example:

    \b
        DEEPHASH_TOKEN=secret deephash serve idx/ --port 8000
    """
    index_dir = index_folder(index_dir, index_opt, "deephash serve IDX")
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if max_upload_mb <= 0:
        raise InvalidInputError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if allow_root is not None and not allow_root.is_dir():
        raise InvalidInputError(f"--allow-root {allow_root} is not a folder")
    from ..retrieval import open_index  # fails early, with one error line, on a folder that is not an index
    from ..service import Settings
    from ..service import serve as run

    open_index(index_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: anyone who can reach it can search this index", err=True)
    run(Settings(str(index_dir), token or None, max_upload_mb, str(allow_root) if allow_root else None),
        host=host, port=port, workers=workers, access_log=access_log)
