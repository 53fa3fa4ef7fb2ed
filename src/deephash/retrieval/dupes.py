"""Near-duplicates in an index: groups of images whose codes lie within a Hamming radius of each other.

Every indexed code is a radius query against the index itself (the index's inclusive range search, in
batches); the pairs found are the edges of a graph whose connected components of two or more images are the
groups. A group is therefore transitive: two members may differ by more than the radius when a chain of
members within it joins them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codes import hamming_distances
from ..errors import InvalidInputError
from .image_index import ImageIndex

BATCH = 1024  # queries per range search


@dataclass
class DuplicateGroup:
    ids: list            # members, the first (smallest id) first, then by distance to it and id
    paths: list          # their stored paths (None where none is stored)
    distances: list      # Hamming distance of each member's code to the first member's

    def to_dict(self) -> dict:
        return {"size": len(self.ids), "ids": self.ids, "paths": self.paths, "distances": self.distances}


def find_duplicates(index: ImageIndex, radius: int, batch: int = BATCH) -> list[DuplicateGroup]:
    """Groups of images within Hamming distance ``radius`` (inclusive, chained), largest first (ties: the group
    whose first member has the smaller id first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise InvalidInputError(f"radius must be a non-negative integer, got {radius!r}")
    semantic = index.semantic
    ids, codes = semantic.ids.copy(), np.asarray(semantic.codes)
    n = len(ids)
    if n == 0:
        return []
    order = np.argsort(ids)
    rows, cols = [], []
    for s in range(0, n, batch):
        lims, _, found = semantic.range_search(codes[s:s + batch], int(radius))
        q = np.repeat(np.arange(s, min(s + batch, n)), np.diff(lims))
        pos = order[np.searchsorted(ids, found, sorter=order)]  # id -> row
        keep = pos != q
        rows.append(q[keep])
        cols.append(pos[keep])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    groups = []
    for lab in np.flatnonzero(sizes > 1):
        members = np.sort(ids[labels == lab])
        mcodes = semantic.get_codes(members)
        d = hamming_distances(mcodes[:1], mcodes)[0].astype(int)
        rank = np.lexsort((members, d))
        rank = np.concatenate([[0], rank[rank != 0]])
        members, d = members[rank], d[rank]
        paths = [(md or {}).get("path") for md in semantic.get_metadata(members)]
        groups.append(DuplicateGroup([int(i) for i in members], paths, [int(x) for x in d]))
    groups.sort(key=lambda g: (-len(g.ids), g.ids[0]))
    return groups


def contact_sheet(groups: list[DuplicateGroup], path: str | Path, max_groups: int = 12, max_members: int = 8,
                  tile: int = 96) -> Path:
    """A PNG with one row per group (the largest ``max_groups``): its first member, then up to ``max_members``
    others captioned with their distance to it. Members whose file cannot be read are drawn grey."""
    from ..data import load_image
    from ..errors import DeephashError
    from ..viz import result_grid

    if not groups:
        raise InvalidInputError("no duplicate groups to draw")

    def pixels(p):
        try:
            return load_image(p, (tile, tile)) if p else _blank(tile)
        except DeephashError:
            return _blank(tile)

    rows = groups[:max_groups]
    firsts = [pixels(g.paths[0]) for g in rows]
    others = [[pixels(p) for p in g.paths[1:max_members + 1]] for g in rows]
    dists = [g.distances[1:max_members + 1] for g in rows]
    titles = [f"{len(g.ids)} images: {Path(g.paths[0]).name if g.paths[0] else f'id {g.ids[0]}'}" for g in rows]
    return result_grid(firsts, others, path, distances=dists, row_titles=titles, tile=tile)


def _blank(tile: int) -> np.ndarray:
    return np.full((tile, tile, 3), 200, np.uint8)
