"""``deephash encode``: parse, call ``deephash.retrieval.Encoder``, print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InvalidInputError
from ._app import app


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` → (i, n) with 0 ≤ i < n."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise InvalidInputError(f"--shard expects I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return i, n


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
    shard: Optional[str] = typer.Option(None, help="I/N: encode only shard I of N (whole batches, in order) and "
                                        "write it to --out; join the N files with 'deephash merge-codes'. Under "
                                        "torchrun each rank takes its shard and rank 0 writes the merged file."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Turn images into packed binary codes with a trained model.

    Example:

    \b
        deephash encode runs/dsh --split query --out q.npz
        torchrun --nproc-per-node 2 -m deephash encode runs/dsh -o db.npz
    """
    from .. import distributed
    from ..codes import CodesFile, merge_shards
    from ..retrieval import Encoder
    from ..utils.io import display_path

    part = parse_shard(shard) if shard is not None else None
    CodesFile.check_destination(out)  # before the model is loaded and the images encoded
    joined = distributed.init_from_env("cpu")
    try:
        if joined:
            if part is not None:
                raise InvalidInputError("--shard is for separate processes; under torchrun each rank takes its shard")
            part = (distributed.rank(), distributed.world_size())
        encoder = Encoder(checkpoint, batch_size=batch_size, workers=workers)
        progress = not quiet and distributed.rank() == 0
        if images is not None:
            cf, failures = encoder.encode_folder(images, progress=progress, shard=part)
        else:
            cf, failures = encoder.encode_split(data, split, protocol, progress=progress, shard=part)
        if joined:  # the shards travel to rank 0 over the process group: no shared file system needed
            parts = distributed.gather_objects((cf, failures), dst=0)
            if parts is None:
                return
            cf, failures = merge_shards([p[0] for p in parts]), [f for p in parts for f in p[1]]
    finally:
        distributed.close()
    cf.save(out)
    for path, reason in failures[:10]:
        typer.echo(f"skipped: {display_path(reason)}", err=True)
    if len(failures) > 10:
        typer.echo(f"skipped: ... and {len(failures) - 10} more", err=True)
    typer.echo(f"wrote {len(cf)} {cf.bits}-bit codes to {display_path(out)}; skipped {len(failures)} unreadable images")


@app.command("merge-codes")
def merge_codes(
    out: Path = typer.Argument(..., help="Codes file to write (.npz)."),
    shards: List[Path] = typer.Argument(..., help="The N shard files of one 'deephash encode --shard I/N' run."),
) -> None:
    """Join the shards of a sharded encode into one codes file, in dataset order (the same bytes as one
    process encoding the whole set).

    Example:

    \b
        deephash encode runs/dsh --shard 0/2 --out db.0.npz  # 1/2: elsewhere
        deephash merge-codes db.npz db.0.npz db.1.npz
    """
    from ..codes import CodesFile, merge_shards
    from ..utils.io import display_path

    CodesFile.check_destination(out)
    cf = merge_shards([CodesFile.load(p) for p in shards], [display_path(p) for p in shards])
    cf.save(out)
    typer.echo(f"wrote {len(cf)} {cf.bits}-bit codes from {len(shards)} shards to {display_path(out)}")
