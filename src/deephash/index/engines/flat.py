"""Exact linear scan: every query against every code, tiled so several queries share each loaded tile."""

from __future__ import annotations

import numpy as np

from ..kernels import flat as kernels
from ..threads import run_parallel
from .base import SnapshotEngine, register_engine


@register_engine("flat")
class FlatEngine(SnapshotEngine):
    """Brute force with a numba XOR+popcount kernel; queries are split over threads. Ties by insertion order."""

    exact = True
    rank = 0

    def _build(self, codes, words) -> None:
        self.db = words.reshape(-1)

    def _knn_keys(self, q, qwords, k: int, threads: int) -> np.ndarray:
        return flat_knn_keys(self.db, self.W, self.n, qwords, k, threads)

    def _range_keys(self, q, qwords, r: int, threads: int):
        return flat_range_keys(self.db, self.W, self.n, qwords, r, threads)


def flat_knn_keys(db: np.ndarray, W: int, n: int, qwords: np.ndarray, k: int, threads: int) -> np.ndarray:
    """Sorted keys of the k nearest of ``n`` codes (``db`` flat uint64 words), per query."""
    nq = len(qwords)
    out = np.empty((nq, k), np.int64)
    if nq >= 2 * threads or threads == 1 or n < 4 * kernels.TILE:
        def job(s, e):
            kernels.flat_knn(db, W, 0, n, qwords[s:e].reshape(-1), k, out[s:e])
        run_parallel(job, nq, threads)
        return out
    # Few queries: split the database instead and merge the partial top-k lists.
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)
    parts = [np.empty((nq, k), np.int64) for _ in range(threads)]
    q = qwords.reshape(-1)

    def part(t, _):
        kernels.flat_knn(db, W, int(bounds[t]), int(bounds[t + 1]), q, k, parts[t])
    run_parallel(part, threads, threads, block=1)
    merged = np.sort(np.concatenate(parts, axis=1), axis=1)
    return np.ascontiguousarray(merged[:, :k])


def flat_range_keys(db: np.ndarray, W: int, n: int, qwords: np.ndarray, r: int, threads: int):
    results = {}

    def job(s, e):
        results[s] = kernels.flat_range(db, W, n, qwords[s:e].reshape(-1), r)
    run_parallel(job, len(qwords), threads)
    return concat_ranges([results[s] for s in sorted(results)], len(qwords))


def concat_ranges(parts, nq: int):
    """Join per-block (lims, keys) results into one FAISS-style (lims, keys)."""
    if not parts:
        return np.zeros(nq + 1, np.int64), np.empty(0, np.int64)
    keys = np.concatenate([p[1] for p in parts])
    counts = np.concatenate([np.diff(p[0]) for p in parts])
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(counts, out=lims[1:])
    return lims, keys
