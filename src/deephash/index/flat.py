"""Exact linear scan: every query against every code, tiled so several queries share each loaded tile."""

from __future__ import annotations

import numpy as np

from . import kernels
from .threads import run_parallel


class FlatEngine:
    """Brute force with a numba XOR+popcount kernel; queries are split over threads."""

    name = "flat"

    def __init__(self, words: np.ndarray):
        self.n, self.W = words.shape
        self.db = words.reshape(-1)

    def knn_keys(self, qwords: np.ndarray, k: int, threads: int) -> np.ndarray:
        nq = len(qwords)
        out = np.empty((nq, k), np.int64)
        if nq >= 2 * threads or threads == 1 or self.n < 4 * kernels.TILE:
            def job(s, e):
                kernels.flat_knn(self.db, self.W, 0, self.n, qwords[s:e].reshape(-1), k, out[s:e])
            run_parallel(job, nq, threads)
            return out
        # Few queries: split the database instead and merge the partial top-k lists.
        bounds = np.linspace(0, self.n, threads + 1).astype(np.int64)
        parts = [np.empty((nq, k), np.int64) for _ in range(threads)]
        q = qwords.reshape(-1)

        def part(t, _):
            kernels.flat_knn(self.db, self.W, int(bounds[t]), int(bounds[t + 1]), q, k, parts[t])
        run_parallel(part, threads, threads, block=1)
        merged = np.sort(np.concatenate(parts, axis=1), axis=1)
        return np.ascontiguousarray(merged[:, :k])

    def range_keys(self, qwords: np.ndarray, r: int, threads: int):
        results = {}

        def job(s, e):
            results[s] = kernels.flat_range(self.db, self.W, self.n, qwords[s:e].reshape(-1), r)
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
