"""FAISS binary indexes as alternative engines (and the benchmark's baseline)."""

from __future__ import annotations

import numpy as np

from .kernels import POS_BITS


class FaissFlatEngine:
    """faiss.IndexBinaryFlat. Exact distances; among equal distances FAISS's own order."""

    name = "faiss-flat"

    def __init__(self, codes: np.ndarray):
        import faiss

        self.index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        self.index.add(np.ascontiguousarray(codes))

    def knn_keys(self, qcodes, k: int) -> np.ndarray:
        D, I = self.index.search(np.ascontiguousarray(qcodes), k)
        keys = (D.astype(np.int64) << POS_BITS) | I
        keys[I < 0] = np.iinfo(np.int64).max
        return keys

    def range_keys(self, qcodes, r: int):
        # FAISS's radius is exclusive (d < radius); ours is inclusive.
        lims, D, I = self.index.range_search(np.ascontiguousarray(qcodes), r + 1)
        keys = (D.astype(np.int64) << POS_BITS) | I
        lims = lims.astype(np.int64)
        for i in range(len(lims) - 1):
            keys[lims[i] : lims[i + 1]].sort()
        return lims, keys
