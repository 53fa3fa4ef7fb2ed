"""FAISS binary indexes as alternative engines (and the benchmark's baseline)."""

from __future__ import annotations

import math

import numpy as np

from .kernels import EMPTY_KEY, POS_BITS

IVF_MIN_POINTS_PER_LIST = 39  # FAISS warns below this many training codes per list
IVF_TRAIN_PER_LIST = 64  # k-means sample: 64 codes per list (FAISS's own cap is 256)


class FaissFlatEngine:
    """faiss.IndexBinaryFlat. Exact distances; among equal distances FAISS's own order."""

    name = "faiss-flat"

    def __init__(self, codes: np.ndarray):
        import faiss

        self.index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        self.index.add(np.ascontiguousarray(codes))

    def knn_keys(self, qcodes, k: int) -> np.ndarray:
        return _knn_keys(self.index, qcodes, k)

    def range_keys(self, qcodes, r: int):
        return _range_keys(self.index, qcodes, r)


class FaissIVFEngine:
    """faiss.IndexBinaryIVF: APPROXIMATE k-NN and radius search for very large n. Codes are grouped into
    ``nlist`` lists by k-means in Hamming space; a query scans only the ``nprobe`` lists nearest to it, so
    a neighbour filed in another list is missed (recall < 1; ``benchmarks/search.py`` reports it). With
    nprobe = nlist every list is scanned and results are exact. Distances of returned codes are exact;
    rows are sorted by distance, ties by insertion position among the codes found."""

    name = "faiss-ivf"

    def __init__(self, codes: np.ndarray, nlist: int | None = None, nprobe: int = 16, seed: int = 0):
        import faiss

        n, nbytes = codes.shape
        self.nlist = default_nlist(n) if nlist is None else int(min(nlist, n))
        self.nprobe = int(min(nprobe, self.nlist))
        self.quantizer = faiss.IndexBinaryFlat(nbytes * 8)
        self.index = faiss.IndexBinaryIVF(self.quantizer, nbytes * 8, self.nlist)
        self.index.cp.seed = seed
        sample = codes
        if n > IVF_TRAIN_PER_LIST * self.nlist:
            sample = codes[np.sort(np.random.default_rng(seed).choice(n, IVF_TRAIN_PER_LIST * self.nlist, replace=False))]
        self.index.train(np.ascontiguousarray(sample))
        self.index.add(np.ascontiguousarray(codes))
        self.index.nprobe = self.nprobe

    def set_nprobe(self, nprobe: int) -> None:
        self.nprobe = int(min(nprobe, self.nlist))
        self.index.nprobe = self.nprobe

    def knn_keys(self, qcodes, k: int) -> np.ndarray:
        keys = _knn_keys(self.index, qcodes, k)
        keys.sort(axis=1)
        return keys

    def range_keys(self, qcodes, r: int):
        return _range_keys(self.index, qcodes, r)


def _knn_keys(index, qcodes, k: int) -> np.ndarray:
    D, I = index.search(np.ascontiguousarray(qcodes), k)
    keys = (D.astype(np.int64) << POS_BITS) | I
    keys[I < 0] = EMPTY_KEY
    return keys


def _range_keys(index, qcodes, r: int):
    # FAISS's radius is exclusive (d < radius); ours is inclusive.
    lims, D, I = index.range_search(np.ascontiguousarray(qcodes), r + 1)
    keys = (D.astype(np.int64) << POS_BITS) | I
    lims = lims.astype(np.int64)
    for i in range(len(lims) - 1):
        keys[lims[i] : lims[i + 1]].sort()
    return lims, keys


def default_nlist(n: int) -> int:
    """About sqrt(n) lists (FAISS's guide for IVF), never fewer than 39 training codes per list."""
    return int(max(1, min(round(math.sqrt(n)), n // IVF_MIN_POINTS_PER_LIST)))
