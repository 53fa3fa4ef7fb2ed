"""``deephash index build|add|remove|info``: parse, call ``deephash.retrieval``, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import InvalidInputError
from ._app import INDEX_ARG_HELP, INDEX_OPT_HELP, app, index_folder

LOCK_HELP = ("seconds to wait while another process writes the index (default: $DEEPHASH_LOCK_TIMEOUT or 60); "
             "writers take turns, so no change is lost")

index_app = typer.Typer(help="Build and maintain a Hamming index of binary codes.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(index_app, name="index")


@index_app.command()
def build(
    out: Path = typer.Option(..., "--out", help="index directory to create or overwrite"),
    codes: Optional[Path] = typer.Option(None, "--codes", help="codes file (.npz) written by `deephash encode`"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="or a trained model (DSH or IAH) to encode "
                                              "--data with; IAH indexes also hold category-aware codes"),
    data: Optional[str] = typer.Option(None, "--data", help="with --checkpoint: the dataset (default: the training one)"),
    split: Optional[str] = typer.Option(None, "--split", help="with --checkpoint: which split (default: database, "
                                        "or a detection dataset's first)"),
    threshold: float = typer.Option(0.5, help="IAH: store a category code when its probability exceeds this"),
    engine: str = typer.Option("auto", "--engine", help="default search engine: auto, flat, mih, faiss-flat, faiss-ivf, milvus "
                                "(or another registered engine)"),
    mih_m: int = typer.Option(None, "--mih-m", help="MIH substrings (default: about bits/log2(n))"),
    ivf_nlist: int = typer.Option(None, "--ivf-nlist", help="faiss-ivf lists (default: about sqrt(n))"),
    ivf_nprobe: int = typer.Option(16, "--ivf-nprobe", help="faiss-ivf lists scanned per query (approximate "
                                   "engine: more lists, higher recall)"),
    uri: Optional[str] = typer.Option(None, "--uri", help="--engine milvus: http://host:19530 (a Milvus server) or a "
                                      "local .db file (Milvus Lite); credentials from $MILVUS_TOKEN or "
                                      "$MILVUS_USER/$MILVUS_PASSWORD, never stored"),
    collection: Optional[str] = typer.Option(None, "--collection", help="--engine milvus: the collection to create "
                                             "(default: the --out folder's name)"),
    features: bool = typer.Option(False, "--features", help="with --checkpoint: also keep each image's pooled "
                                  "features (float16) for re-ranked searches (deephash search --rerank)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build an index from a codes file, or by encoding a dataset with a trained model.

    Example:

    \b
        deephash index build --checkpoint runs/dsh --out idx/
    """
    from ..codes import CodesFile
    from ..retrieval import ImageIndex

    if (codes is None) == (checkpoint is None):
        raise InvalidInputError("give exactly one of --codes (a codes file) or --checkpoint (a model to encode --data)")
    if features and checkpoint is None:
        raise InvalidInputError("--features keeps the model's features of the images: it goes with --checkpoint")
    options = {"mih": {"m": mih_m}, "faiss-ivf": {"nlist": ivf_nlist, "nprobe": ivf_nprobe}}
    options = {name: {k: v for k, v in given.items() if v is not None} for name, given in options.items()}
    settings = dict(engine=engine, engine_options={name: given for name, given in options.items() if given})
    if engine == "milvus":
        from ..index.engines.milvus import collection_name

        if uri is None:
            raise InvalidInputError("--engine milvus needs --uri (http://host:19530, or a local .db file for "
                                    "Milvus Lite)")
        settings["engine_settings"] = {"uri": uri, "collection": collection or collection_name(out.resolve().name)}
    elif uri is not None or collection is not None:
        raise InvalidInputError("--uri and --collection go with --engine milvus")
    if codes is not None:
        index = ImageIndex.from_codes(CodesFile.load(codes), **settings)
    else:
        from ..retrieval import Encoder

        dataset = Encoder(checkpoint).dataset(data, split, progress=not quiet)
        index = ImageIndex.build(checkpoint, dataset, threshold=threshold, progress=not quiet, features=features,
                                 **settings)
    index.save(out)
    padded = f" (padded to {8 * index.nbytes})" if 8 * index.nbytes != index.bits else ""
    extra = f", {len(index.category)} category codes" if index.category is not None else ""
    extra += f", {index.feature_dim}-value features" if index.keeps_features else ""
    typer.echo(f"indexed {len(index)} codes of {index.bits} bits{extra} into {out}{padded}")


@index_app.command()
def add(
    index_arg: Optional[Path] = typer.Argument(None, metavar="INDEX", help=INDEX_ARG_HELP, show_default=False),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
    codes: Optional[Path] = typer.Option(None, "--codes", help="codes file (.npz) with the codes to add"),
    images: Optional[Path] = typer.Option(None, "--images", help="or a folder of images to encode with the index's "
                                          "model and add (unreadable files are skipped)"),
    keep_ids: bool = typer.Option(False, "--keep-ids", help="with --codes: keep the file's ids (they must be new) "
                                  "instead of giving the codes fresh ids after the index's largest"),
    lock_timeout: Optional[float] = typer.Option(None, "--lock-timeout", help=LOCK_HELP),
) -> None:
    """Add the codes of a codes file (with fresh ids, or theirs with --keep-ids), or images, and save.
    An index built with --features keeps the new images' features too.

    Example:

    \b
        deephash index add idx/ --images new-photos/
    """
    from ..codes import CodesFile
    from ..data import list_images
    from ..retrieval import update_index

    index_dir = index_folder(index_arg, index_opt, "deephash index add IDX --images FOLDER")
    if (codes is None) == (images is None):
        raise InvalidInputError("give exactly one of --codes or --images")
    if keep_ids and codes is None:
        raise InvalidInputError("--keep-ids keeps the ids of a codes file: it goes with --codes")
    new = CodesFile.load(codes) if codes is not None else None
    with update_index(index_dir, timeout=lock_timeout) as index:
        if new is not None:
            added = len(index.add_codes(new, keep_ids=keep_ids))
            failures = []
        else:
            res = index.add(list_images(images))
            added, failures = len(res.ids), res.failures
    for path, reason in failures:
        typer.echo(f"skipped: {reason}", err=True)
    typer.echo(f"added {added} codes; index holds {len(index)}")


@index_app.command()
def remove(
    index_arg: Optional[Path] = typer.Argument(None, metavar="INDEX", help=INDEX_ARG_HELP, show_default=False),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
    ids: str = typer.Option(..., "--ids", help="comma-separated ids, e.g. 1,2,3"),
    lock_timeout: Optional[float] = typer.Option(None, "--lock-timeout", help=LOCK_HELP),
) -> None:
    """Remove images by id and save.

    Example:

    \b
        deephash index remove idx/ --ids 3,17
    """
    from ..retrieval import update_index

    index_dir = index_folder(index_arg, index_opt, "deephash index remove IDX --ids 3,17")
    try:
        wanted = [int(s) for s in ids.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"--ids must be comma-separated integers, got {ids!r}") from None
    with update_index(index_dir, timeout=lock_timeout) as index:
        n = index.remove(wanted)
    typer.echo(f"removed {n} codes; index holds {len(index)}")


@index_app.command()
def info(
    index_arg: Optional[Path] = typer.Argument(None, metavar="INDEX", help=INDEX_ARG_HELP, show_default=False),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
) -> None:
    """Print the index manifest summary as JSON (checksums are verified).

    Example:

    \b
        deephash index info idx/
    """
    from ..retrieval import open_index

    index_dir = index_folder(index_arg, index_opt, "deephash index info IDX")
    typer.echo(json.dumps(open_index(index_dir).info(), indent=2))
