"""``deephash encode``: parse, call ``deephash.retrieval.Encoder``, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command()
def encode(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint (or its run folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Codes file to write (.npz)."),
    images: Optional[Path] = typer.Option(
        None, help="A folder of arbitrary images (any size or mode), searched recursively; unreadable ones, and ones "
                   "above DEEPHASH_MAX_PIXELS (64 Mpx), are skipped and named."),
    data: Optional[str] = typer.Option(None, help="A dataset spec; default: the one the model was trained on."),
    split: Optional[str] = typer.Option(None, help="train, query or database (default database); a dataset with boxes "
                                        "(IAH): one of its split folders (default its first)."),
    protocol: Optional[str] = typer.Option(None, help="Split protocol (default: the training one; not for IAH)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per batch (default: the method's, 256 for DSH)."),
    workers: int = typer.Option(0, help="Decoding processes for image files."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Turn images into packed binary codes with a trained model.

    Example:

    \b
        deephash encode runs/dsh --split query --out q.npz
    """
    from ..codes import CodesFile
    from ..utils.io import display_path
    from ..retrieval import Encoder

    CodesFile.check_destination(out)  # before the model is loaded and the images encoded
    encoder = Encoder(checkpoint, batch_size=batch_size, workers=workers)
    if images is not None:
        cf, failures = encoder.encode_folder(images, progress=not quiet)
    else:
        cf, failures = encoder.encode_split(data, split, protocol, progress=not quiet)
    cf.save(out)
    for path, reason in failures[:10]:
        typer.echo(f"skipped: {display_path(reason)}", err=True)
    if len(failures) > 10:
        typer.echo(f"skipped: ... and {len(failures) - 10} more", err=True)
    typer.echo(f"wrote {len(cf)} {cf.bits}-bit codes to {display_path(out)}; skipped {len(failures)} unreadable images")
