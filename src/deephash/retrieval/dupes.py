"""Near-duplicates in an index: groups of images whose codes lie within a Hamming radius of each other.

Every indexed code is a radius query against the index itself (the index's inclusive range search, in
batches); the pairs found are the edges of a graph whose connected components of two or more images are the
groups. A group is therefore transitive: two members may differ by more than the radius when a chain of
members within it joins them.

Without a radius, ``default_radius`` derives one from the code length and the index's own distances, and
``chaining_warning`` says when a radius lets chains merge an implausible share of the collection into one group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codes import hamming_distances
from ..errors import InvalidInputError
from .image_index import ImageIndex

BATCH = 1024  # queries per range search
BITS_FRACTION = 16   # the default radius is at most 1/16 of the code length (3 of 48 bits)
NEAR_SHARE = 0.05    # ... and at most this share of images may have their nearest neighbour within it
SAMPLE = 2000        # images whose nearest neighbour is looked up to measure that share
CHAIN_SHARE = 0.05   # a group holding more than this share of the collection (and CHAIN_MIN images) is chaining
CHAIN_MIN = 10


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


@dataclass
class RadiusChoice:
    radius: int
    reason: str          # one line: why this radius
    near_share: float    # share of the sampled images whose nearest neighbour lies within ``radius``
    sampled: int         # images sampled


def nearest_neighbour_distances(index: ImageIndex, sample: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """Hamming distance from each of up to ``sample`` images (a seeded random sample) to its nearest other image."""
    semantic = index.semantic
    ids = np.asarray(semantic.ids)
    if len(ids) < 2:
        return np.empty(0, np.int64)
    chosen = np.sort(np.random.default_rng(seed).choice(ids, min(sample, len(ids)), replace=False))
    D, I = semantic.search(semantic.get_codes(chosen), 2)
    # the image itself comes first unless an exact copy inserted before it does (then the nearest is at 0)
    return np.where(I[:, 0] == chosen, D[:, 1], D[:, 0]).astype(np.int64)


def default_radius(index: ImageIndex, sample: int = SAMPLE, seed: int = 0) -> RadiusChoice:
    """A radius for ``find_duplicates`` when none is given: 1/``BITS_FRACTION`` of the code length, lowered
    until at most ``NEAR_SHARE`` of the images (measured on a sample) have their nearest neighbour that close.
    Near-duplicates are rare in a collection, so a radius within which most images have a neighbour groups
    look-alikes, not copies; exact copies (distance 0) are found at any radius."""
    bits = int(index.bits)
    cap = bits // BITS_FRACTION
    nn = nearest_neighbour_distances(index, sample, seed)
    if not len(nn):
        return RadiusChoice(0, "fewer than two images in the index", 0.0, 0)
    share = lambda r: float(np.mean(nn <= r))  # noqa: E731
    radius = cap
    while radius > 0 and share(radius) > NEAR_SHARE:
        radius -= 1
    n = f"{len(nn):,} sampled images" if len(nn) < len(index) else f"the {len(nn):,} images"
    why = f"1/{BITS_FRACTION} of the {bits}-bit codes is {cap}"
    if radius < cap:
        why += (f", but {share(cap):.0%} of {n} have their nearest neighbour within {cap} bits; within {radius}, "
                f"{share(radius):.1%} do (near-duplicates are rare: at most {NEAR_SHARE:.0%})")
    else:
        why += f"; {share(radius):.1%} of {n} have their nearest neighbour within it (at most {NEAR_SHARE:.0%})"
    return RadiusChoice(radius, why, share(radius), len(nn))


def chaining_warning(groups: list[DuplicateGroup], images: int, radius: int,
                     suggested: int | None = None) -> str | None:
    """A warning when the largest group holds more than ``CHAIN_SHARE`` of the images (and at least ``CHAIN_MIN``):
    copies come in small groups, so one that large is codes chained a few bits at a time through look-alikes.
    It suggests ``suggested`` (e.g. ``default_radius``) when smaller than ``radius``, else ``radius - 1``."""
    if not groups or len(groups[0].ids) < max(CHAIN_MIN, CHAIN_SHARE * images):
        return None
    size = len(groups[0].ids)
    smaller = suggested if suggested is not None and suggested < radius else radius - 1
    advice = (f"try a smaller radius (--radius {smaller})" if radius > 0 else
              "at radius 0 these codes are identical: the model does not tell these images apart")
    return (f"the largest group holds {size:,} of {images:,} images ({size / images:.0%}): at radius {radius} "
            f"chains of near codes join images that are not near-duplicates; {advice}")


def contact_sheet(groups: list[DuplicateGroup], path: str | Path, max_groups: int = 12, max_members: int = 8,
                  tile: int = 96) -> Path:
    """A PNG with one row per group (the largest ``max_groups``): its first member, captioned "keep?" (the
    suggested copy to keep, the first indexed), then up to ``max_members`` others captioned with their distance
    to it. Members whose file cannot be read are drawn grey."""
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
    return result_grid(firsts, others, path, distances=dists, row_titles=titles, tile=tile, query_caption="keep?")


def _blank(tile: int) -> np.ndarray:
    return np.full((tile, tile, 3), 200, np.uint8)
