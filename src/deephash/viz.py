"""Pictures people would rather see than read: result grids (query | top-k results)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .utils.io import atomic_write

GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (150, 150, 150)


def _tile(img: np.ndarray, size: int, border: tuple, boxes=None) -> Image.Image:
    h, w = img.shape[:2]
    tile = Image.fromarray(img).resize((size, size), Image.NEAREST if max(h, w) < size else Image.BILINEAR)
    draw = ImageDraw.Draw(tile)
    for box in boxes or []:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        sx, sy = size / w, size / h
        draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=(255, 200, 0), width=2)
    framed = Image.new("RGB", (size + 6, size + 6), border)
    framed.paste(tile, (3, 3))
    return framed


def result_grid(queries: Sequence[np.ndarray], results: Sequence[Sequence[np.ndarray]], path: str | Path,
                distances: Sequence[Sequence[int]] | None = None, relevant: Sequence[Sequence[bool]] | None = None,
                row_titles: Sequence[str] | None = None, tile: int = 72,
                query_boxes=None, result_boxes=None, query_caption: str = "query") -> Path:
    """One row per query: the query (grey frame, captioned ``query_caption``), then its results framed green
    (relevant), red (not relevant) or grey (unknown), each captioned with its Hamming distance."""
    k = max((len(r) for r in results), default=0)
    cell_w, cell_h = tile + 10, tile + 24
    title_h = 14 if row_titles else 0
    canvas = Image.new("RGB", (cell_w * (k + 1) + 8, (cell_h + title_h) * len(queries) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, q in enumerate(queries):
        y = r * (cell_h + title_h) + 2
        if row_titles:
            draw.text((4, y), row_titles[r], fill=(0, 0, 0))
            y += title_h
        canvas.paste(_tile(q, tile, GREY, query_boxes[r] if query_boxes else None), (2, y))
        draw.text((4, y + tile + 8), query_caption, fill=(0, 0, 0))
        for c, img in enumerate(results[r]):
            ok = None if relevant is None else bool(relevant[r][c])
            border = GREY if ok is None else (GREEN if ok else RED)
            boxes = result_boxes[r][c] if result_boxes else None
            x = (c + 1) * cell_w + 6
            canvas.paste(_tile(img, tile, border, boxes), (x, y))
            if distances is not None:
                draw.text((x + 2, y + tile + 8), f"d={int(distances[r][c])}", fill=(0, 0, 0))
    path = Path(path)

    def write(fh):
        canvas.save(fh, format="PNG")

    atomic_write(path, write)
    return path
