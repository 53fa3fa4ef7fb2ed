from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import DeephashError
from ._app import app


@app.command()
def encode(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint (or its run folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Codes file to write (.npz)."),
    images: Optional[Path] = typer.Option(None, help="A folder of arbitrary images (any size or mode), searched recursively."),
    data: Optional[str] = typer.Option(None, help="A dataset spec; default: the one the model was trained on."),
    split: str = typer.Option("database", help="train, query or database (with a dataset)."),
    protocol: Optional[str] = typer.Option(None, help="Split protocol (default: the training one)."),
    batch_size: int = typer.Option(256),
    workers: int = typer.Option(0, help="Decoding processes for image files."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Turn images into packed binary codes with a trained model."""
    from ..codes import CodesFile
    from ..data import FileDataset, list_images
    from ..encode import encode_dataset
    from ..train.checkpoint import load_checkpoint, model_from_checkpoint
    from ..train.config import TrainConfig
    from ..train.run import codes_for, load_split, subset_of

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    cfg = ckpt["config"]
    meta = {"checkpoint": str(checkpoint.resolve()), "model": cfg["model"], "bits": cfg["bits"]}
    if images is not None:
        paths = list_images(images)
        if not paths:
            raise DeephashError(f"no image files under {images}")
        ds = FileDataset(paths, None, ckpt["class_names"], model.image_size, name=images.name)
        res = encode_dataset(model, ds, batch_size=batch_size, workers=workers, progress=not quiet)
        cf = CodesFile(res.codes, model.bits, ids=res.indices, paths=[ds.paths[i] for i in res.indices],
                       class_names=ckpt["class_names"], meta={**meta, "images": str(images)})
        failures = res.failures
    else:
        spec = data or cfg["data"]
        proto = protocol or cfg["protocol"]
        size = TrainConfig.stored_size(cfg)
        sp = load_split(spec, proto, cfg["seed"], size, progress=not quiet)
        ds = subset_of(sp, split)
        meta.update(data=spec, protocol=sp.protocol, seed=cfg["seed"], image_size=size, split=split)
        cf, failures = codes_for(model, ds, meta, progress=not quiet, workers=workers)
    cf.save(out)
    for path, reason in failures[:10]:
        typer.echo(f"skipped: {reason}", err=True)
    if len(failures) > 10:
        typer.echo(f"skipped: ... and {len(failures) - 10} more", err=True)
    typer.echo(f"wrote {len(cf)} {cf.bits}-bit codes to {out}; skipped {len(failures)} unreadable images")
