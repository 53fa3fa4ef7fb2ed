from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DeephashError
from ._app import app


def _database(index_dir: Optional[Path], database: Optional[Path]):
    """An index from disk, or one built in memory from a codes file; plus a metadata lookup."""
    from ..codes import CodesFile
    from ..index import HammingIndex, index_from_codes

    if (index_dir is None) == (database is None):
        raise DeephashError("give exactly one of --index (an index folder) or --database (a codes file)")
    if index_dir is not None:
        idx = HammingIndex.load(index_dir)
        return idx, None, idx.checkpoint
    cf = CodesFile.load(database)
    idx = index_from_codes(cf)
    return idx, cf, idx.checkpoint


@app.command()
def search(
    index: Optional[Path] = typer.Option(None, "--index", help="An index folder (deephash index build)."),
    database: Optional[Path] = typer.Option(None, "--database", help="Or a codes file to search directly."),
    image: List[Path] = typer.Option([], "--image", help="Query image(s); needs a checkpoint."),
    query: Optional[Path] = typer.Option(None, "--query", "--codes", help="Query codes file (batch queries)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Model for --image (default: the one the index came from)."),
    k: int = typer.Option(10, "-k", help="Number of neighbours."),
    radius: Optional[int] = typer.Option(None, help="Return every item within this Hamming distance (inclusive) instead."),
    grid: Optional[Path] = typer.Option(None, help="Write a PNG grid of each query and its results."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query instead of a table."),
    limit: int = typer.Option(20, help="At most this many queries in the grid."),
    mode: str = typer.Option("semantic", help="semantic: one code per image; category: an IAH index's "
                                              "category-aware codes, grouped by the query's predicted categories."),
    threshold: float = typer.Option(0.5, help="--mode category: search the categories above this probability."),
) -> None:
    """Hamming search: the nearest codes to query images or query codes."""
    from .iah import iah_search, is_iah_index

    if mode not in ("semantic", "category"):
        raise DeephashError(f"--mode must be semantic or category, got {mode!r}")
    if mode == "category" or is_iah_index(index):
        return iah_search(index, image, checkpoint, mode, k, grid, as_json, threshold, limit)
    import numpy as np

    from ..codes import CodesFile
    from ..data import load_image
    from ..train.checkpoint import load_checkpoint, model_from_checkpoint

    idx, cf, ckpt_path = _database(index, database)
    if bool(image) == (query is not None):
        raise DeephashError("give query images (--image) or a query codes file (--query), not both or neither")
    if image:
        ckpt_path = checkpoint or ckpt_path
        if not ckpt_path:
            raise DeephashError("--image needs --checkpoint (the database records no model)")
        model = model_from_checkpoint(load_checkpoint(ckpt_path))
        pixels = [load_image(p) for p in image]
        from ..data import to_tensor

        batch = np.stack([load_image(p, model.image_size) for p in image])
        qcodes, qnames = model.encode(to_tensor(batch)), [str(p) for p in image]
        qbits, qcf = model.bits, None
    else:
        qcf = CodesFile.load(query)
        qbits = qcf.bits
        qcodes, qnames = qcf.codes, [qcf.paths[i] if qcf.paths else f"id {int(q)}" for i, q in enumerate(qcf.ids)]
        pixels = None
    if qbits != idx.code_bits:
        raise DeephashError(f"query codes have {qbits} bits but the database has {idx.code_bits}")
    if radius is not None:
        lims, D, I = idx.range_search(qcodes, radius)
        rows = [(D[lims[i]:lims[i + 1]], I[lims[i]:lims[i + 1]]) for i in range(len(qcodes))]
    else:
        D, I = idx.search(qcodes, k)
        rows = [(d[i >= 0], i[i >= 0]) for d, i in zip(D, I)]
    for qn, (d, ids) in zip(qnames, rows):
        info = [m or {} for m in idx.get_metadata(ids)]
        if as_json:
            typer.echo(json.dumps({"query": qn, "results": [{"id": int(i), "distance": int(x), **m}
                                                            for i, x, m in zip(ids, d, info)]}))
            continue
        typer.echo(f"query {qn}: {len(ids)} results" + (f" within distance {radius} (inclusive)" if radius is not None else ""))
        for rank, (i, x, m) in enumerate(zip(ids, d, info), 1):
            extra = " ".join(str(v) if not isinstance(v, list) else ",".join(map(str, v)) for v in m.values())
            typer.echo(f"  {rank:>3}  id {int(i):>8}  d={int(x):>3}  {extra}")
    if grid is not None:
        _draw(grid, rows[:limit], qnames[:limit], pixels, qcf, idx, cf)
        typer.echo(f"wrote {grid}")


def _draw(path, rows, qnames, pixels, qcf, idx, cf) -> None:
    from ..data import load_image
    from ..train.run import images_for
    from ..viz import result_grid

    cache: dict = {}
    if pixels is None:
        pixels = images_for(qcf, qcf.ids[: len(rows)], cache)
    results = []
    for _, ids in rows:
        if cf is not None:
            results.append(images_for(cf, ids, cache))
        else:
            paths = [(m or {}).get("path") for m in idx.get_metadata(ids)]
            if not all(p and Path(p).is_file() for p in paths):
                raise DeephashError("the index metadata holds no readable image paths for the grid")
            results.append([load_image(p) for p in paths])
    result_grid(pixels[: len(rows)], results, path, distances=[d for d, _ in rows], row_titles=qnames)
