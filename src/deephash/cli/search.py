"""``deephash search``: parse, call ``deephash.retrieval``, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InvalidInputError
from ._app import INDEX_OPT_HELP, app, index_folder


@app.command()
def search(
    index_arg: Optional[Path] = typer.Argument(None, metavar="INDEX", show_default=False,
                                               help="Index folder (deephash up, deephash index build); or give it "
                                                    "as --index, or search a codes file with --database."),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
    database: Optional[Path] = typer.Option(None, "--database", help="Or a codes file to search directly."),
    image: List[Path] = typer.Option([], "--image", help="Query image(s); needs a checkpoint."),
    query: Optional[Path] = typer.Option(None, "--query", "--codes", help="Query codes file (batch queries)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Model for --image (default: the one the index came from)."),
    k: int = typer.Option(10, "-k", help="Number of neighbours (a k above the database size returns every item)."),
    radius: Optional[int] = typer.Option(None, help="Return every item within this Hamming distance (inclusive) "
                                         "instead; a radius above the code length finds every item."),
    grid: Optional[Path] = typer.Option(None, help="Write a PNG grid of each query and its results."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query instead of a table, with each "
                                 "result's id and every stored field."),
    limit: int = typer.Option(20, help="At most this many rows in the grid."),
    mode: str = typer.Option("semantic", help="semantic: one code per image; category: an IAH index's "
                                              "category-aware codes, grouped by the query's predicted categories."),
    threshold: float = typer.Option(0.5, help="--mode category: search the categories above this probability."),
    rerank: Optional[int] = typer.Option(None, "--rerank", help="two-stage search: take the k*F nearest by "
                                         "Hamming distance and keep the k most similar by cosine of their features "
                                         "(an index built with --features; query images)"),
) -> None:
    """Hamming search: the nearest codes to query images or query codes.

    Example:

    \b
        deephash search idx/ --image photo.jpg -k 10 --grid grid.png
    """
    from ..codes import CodesFile
    from ..retrieval import ImageIndex, open_index
    from ..utils.io import display_path

    if database is not None and (index_arg is not None or index_opt is not None):
        raise InvalidInputError("give an index folder or --database (a codes file), not both")
    index = None if database is not None else index_folder(index_arg, index_opt, "deephash search IDX --image q.jpg",
                                                           "; or --database FILE, a codes file")
    if bool(image) == (query is not None):
        raise InvalidInputError("give query images (--image) or a query codes file (--query), not both or neither")
    idx = open_index(index) if index is not None else ImageIndex.from_codes(CodesFile.load(database))
    if checkpoint is not None:
        idx.use_checkpoint(checkpoint)
    if image:
        from ..data import load_image

        results = idx.search(images=image, k=k, radius=radius, mode=mode, threshold=threshold, rerank=rerank)
        pixels = [load_image(p) for p in image] if grid is not None else None
    else:
        qcf = CodesFile.load(query)
        results = idx.search(codes=qcf, k=k, radius=radius, mode=mode, rerank=rerank)
        pixels = None
        if grid is not None:
            from ..retrieval.grid import codes_file_pixels

            pixels = codes_file_pixels(qcf, qcf.ids[:limit])
    for qr in results:
        if as_json:
            typer.echo(json.dumps(qr.to_dict()))
            continue
        within = f" within distance {radius} (inclusive)" if radius is not None else ""
        typer.echo(display_path(f"query {qr.query}: {len(qr.results)} results{within}"))
        for cat, found in qr.groups():
            if cat is not None:
                typer.echo(f"  [{cat.name} p={cat.prob:.2f}]")
            for rank, r in enumerate(found, 1):  # what a person reads; ids, boxes and bookkeeping are in --json
                labels = f"  {','.join(r.labels)}" if r.labels else ""
                score = f"  cos={r.score:.4f}" if r.score is not None else ""
                typer.echo(display_path(f"  {rank:>3}  d={r.distance:<3} {r.path or f'id {r.id}'}{labels}{score}"))
    if grid is not None:
        from ..retrieval.grid import draw_results

        draw_results(grid, results, pixels, idx, limit)
        typer.echo(f"wrote {grid}")
