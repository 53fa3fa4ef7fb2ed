"""``deephash up``: index a folder of photos (``retrieval.ingest.sync_folder``), then serve it (``deephash serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command()
def up(
    photos: Path = typer.Argument(..., help="Folder of photos, scanned recursively (JPEG, PNG, WebP, GIF, BMP, TIFF)."),
    index_dir: Optional[Path] = typer.Option(None, "--index", help="Index folder (default PHOTOS/.deephash)."),
    model: Optional[Path] = typer.Option(None, help="A trained checkpoint (or run folder) to encode with; default: "
                                         "fit ITQ on the photos (or, with --supervised, the DSH head)."),
    supervised: bool = typer.Option(False, "--supervised", help="Train the DSH head of the best recipe on the class "
                                    "sub-folders (PHOTOS/<class>/...), or on --labels, instead of unsupervised ITQ."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Label file giving photos' classes (implies "
                                          "--supervised): a .csv of 'path,class' rows, or a list file of 'path 0 1 "
                                          "0 ...' lines (classes.txt beside it names the classes); paths relative "
                                          "to PHOTOS. Photos it does not name are indexed but not trained on."),
    bits: Optional[int] = typer.Option(None, help="Code length of a new model [default: 48]. An index that holds "
                                       "photos keeps its own: a different value is refused."),
    image_size: Optional[int] = typer.Option(None, help="Input size of a new model, in pixels [default: 160]; an "
                                             "existing index keeps its own, as for --bits."),
    sample: Optional[int] = typer.Option(None, help="Photos ITQ is fitted on (a random sample) [default: 2000]."),
    rehash: bool = typer.Option(False, "--rehash", help="Hash every file, even those whose size and modification "
                                "time are unchanged."),
    commit_seconds: float = typer.Option(10.0, help="Save the index at most this often while encoding: the work a "
                                         "crash can cost (a killed run resumes from the last save)."),
    batch_size: int = typer.Option(256, help="Photos encoded per batch."),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Serve the search page when done."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: Optional[str] = typer.Option(None, envvar="DEEPHASH_TOKEN", show_envvar=True,
                                        help="Bearer token that adding and removing images need (without one the "
                                             "server is read-only)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Index a folder of photos and serve a search page over it. Run it again to pick up new, changed and
    deleted photos (unchanged ones are skipped); a run that was killed finishes on the next one.

    Example:

    \b
        deephash up ~/Pictures            # then open http://127.0.0.1:8000
    """
    from ..retrieval.ingest import sync_folder
    from ..utils.io import display_path

    def say(line: str) -> None:
        if not quiet:
            typer.echo(line, err=True)

    report = sync_folder(photos, index_dir, model, supervised, bits, image_size, sample, rehash=rehash,
                         commit_seconds=commit_seconds, batch_size=batch_size, progress=not quiet, log=say,
                         labels=labels)
    if report.fitted:
        typer.echo(f"model: {display_path(report.model)}")
    for path, reason in report.unreadable:
        typer.echo(f"unreadable: {display_path(path)}: {display_path(reason)}")
    typer.echo(report.summary())
    if serve_after:
        from . import serve as serve_cmd

        serve_cmd.serve(report.index_dir, host=host, port=port, token=token, max_upload_mb=20.0, workers=1,
                        allow_root=photos, access_log=True)
