"""Result grids for query results: each (query, category) row shows the query and its results, with the
proposal boxes of category-aware matches drawn in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import CodesFile
from ..data import load_image
from ..errors import InvalidInputError
from ..viz import result_grid
from .image_index import ImageIndex
from .results import QueryResult


def draw_results(path: str | Path, results: list[QueryResult], query_pixels: list[np.ndarray], index: ImageIndex,
                 limit: int = 20) -> Path:
    """One row per query (per searched category in category mode), at most ``limit`` rows. Result images come
    from the paths stored in the index, or from the dataset a codes file records."""
    queries, images, dists, qboxes, rboxes, titles = [], [], [], [], [], []
    for qr, pixels in zip(results, query_pixels):
        for cat, found in qr.groups():
            if len(queries) >= limit:
                break
            imgs = _pixels_of(index, found)
            queries.append(pixels)
            qboxes.append([_pixel_box(cat.box, pixels)] if cat is not None and cat.box else [])
            images.append(imgs)
            rboxes.append([[_pixel_box(r.box, im)] if r.box else [] for r, im in zip(found, imgs)])
            dists.append([r.distance for r in found])
            title = Path(qr.query).name
            titles.append(f"{title} [{cat.name} p={cat.prob:.2f}]" if cat is not None else title)
    return result_grid(queries, images, path, distances=dists, row_titles=titles, query_boxes=qboxes,
                       result_boxes=rboxes)


def _pixels_of(index: ImageIndex, found) -> list[np.ndarray]:
    if index.codes_file is not None:
        return codes_file_pixels(index.codes_file, np.array([r.id for r in found], np.int64))
    if not all(r.path and Path(r.path).is_file() for r in found):
        raise InvalidInputError("the index metadata holds no readable image paths for the grid")
    return [load_image(r.path) for r in found]


def codes_file_pixels(codes: CodesFile, ids: np.ndarray, cache: dict | None = None) -> list[np.ndarray]:
    """Pixels of given ids of a codes file: from its image paths when they are files, else from the dataset
    split its metadata records (``cache`` keeps loaded splits between calls)."""
    from ..data import load_split

    if codes.paths is not None:
        pos = {int(i): k for k, i in enumerate(codes.ids)}
        paths = [codes.paths[pos[int(i)]] for i in ids]
        if all(Path(p).is_file() for p in paths):
            return [load_image(p) for p in paths]
    m = codes.meta
    if not {"data", "split"} <= m.keys():
        raise InvalidInputError("the codes file records neither image files nor its dataset; cannot draw images")
    key = (m["data"], m.get("protocol"), m.get("seed", 0), m.get("image_size"), m["split"])
    cache = _SPLITS if cache is None else cache
    if key not in cache:
        cache.clear()  # one split held at a time
        cache[key] = load_split(m["data"], m.get("protocol"), m.get("seed", 0), m.get("image_size"),
                                progress=False).part(m["split"])
    return [cache[key].image_u8(int(i)) for i in ids]


_SPLITS: dict = {}


def _pixel_box(box, img) -> list:
    h, w = img.shape[:2]
    return [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
