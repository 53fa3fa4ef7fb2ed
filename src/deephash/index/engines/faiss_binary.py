"""FAISS binary indexes as alternative engines (and the benchmark's baseline). faiss is imported at build
time, so configuring an index never needs it."""

from __future__ import annotations

import math

import numpy as np

from ..kernels.flat import EMPTY_KEY, POS_BITS
from .base import SnapshotEngine, positive_int, register_engine

IVF_MIN_POINTS_PER_LIST = 39  # FAISS warns below this many training codes per list
IVF_TRAIN_PER_LIST = 64  # k-means sample: 64 codes per list (FAISS's own cap is 256)


@register_engine("faiss-flat")
class FaissFlatEngine(SnapshotEngine):
    """faiss.IndexBinaryFlat. Exact distances; among equal distances FAISS's own order."""

    exact = True
    rank = 2
    ties = "engine"

    def _build(self, codes, words) -> None:
        import faiss

        self.index = faiss.IndexBinaryFlat(self.bits)
        self.index.add(codes)

    def _knn_keys(self, q, qwords, k: int, threads: int) -> np.ndarray:
        return _knn_keys(self.index, q, k)

    def _range_keys(self, q, qwords, r: int, threads: int):
        return _range_keys(self.index, q, r)


@register_engine("faiss-ivf")
class FaissIVFEngine(SnapshotEngine):
    """faiss.IndexBinaryIVF: APPROXIMATE k-NN and radius search for very large n. Codes are grouped into
    ``nlist`` lists by k-means in Hamming space (None: about sqrt(n)); a query scans only the ``nprobe``
    lists nearest to it, so a neighbour filed in another list is missed (recall < 1;
    ``benchmarks/search.py`` reports it). With nprobe = nlist every list is scanned and results are exact.
    Distances of returned codes are exact; rows are sorted by distance, ties by insertion position among
    the codes found."""

    exact = False
    rank = 3
    ties = "found-position"
    defaults = {"nlist": None, "nprobe": 16}
    SEED = 0

    def _validate(self, s: dict) -> dict:
        return {"nlist": None if s["nlist"] is None else positive_int("faiss-ivf setting nlist", s["nlist"]),
                "nprobe": positive_int("faiss-ivf setting nprobe", s["nprobe"])}

    def _build(self, codes, words) -> None:
        import faiss

        n = len(codes)
        nlist = self._settings["nlist"]
        self.nlist = default_nlist(n) if nlist is None else int(min(nlist, n))
        self.quantizer = faiss.IndexBinaryFlat(self.bits)
        self.index = faiss.IndexBinaryIVF(self.quantizer, self.bits, self.nlist)
        self.index.cp.seed = self.SEED
        sample = codes
        if n > IVF_TRAIN_PER_LIST * self.nlist:
            pick = np.random.default_rng(self.SEED).choice(n, IVF_TRAIN_PER_LIST * self.nlist, replace=False)
            sample = codes[np.sort(pick)]
        self.index.train(np.ascontiguousarray(sample))
        self.index.add(codes)
        self.set_nprobe(self._settings["nprobe"])

    def set_nprobe(self, nprobe: int) -> None:
        """Lists scanned per query (recall vs speed), without redoing the k-means. Changes what concurrent
        searches of this engine see: a writer's operation."""
        self._settings["nprobe"] = positive_int("faiss-ivf setting nprobe", nprobe)
        if self.n:
            self.nprobe = int(min(self._settings["nprobe"], self.nlist))
            self.index.nprobe = self.nprobe

    def _knn_keys(self, q, qwords, k: int, threads: int) -> np.ndarray:
        keys = _knn_keys(self.index, q, k)
        keys.sort(axis=1)
        return keys

    def _range_keys(self, q, qwords, r: int, threads: int):
        return _range_keys(self.index, q, r)


def _knn_keys(index, qcodes, k: int) -> np.ndarray:
    D, I = index.search(qcodes, k)
    keys = (D.astype(np.int64) << POS_BITS) | I
    keys[I < 0] = EMPTY_KEY
    return keys


def _range_keys(index, qcodes, r: int):
    # FAISS's radius is exclusive (d < radius); ours is inclusive.
    lims, D, I = index.range_search(qcodes, r + 1)
    keys = (D.astype(np.int64) << POS_BITS) | I
    lims = lims.astype(np.int64)
    for i in range(len(lims) - 1):
        keys[lims[i] : lims[i + 1]].sort()
    return lims, keys


def default_nlist(n: int) -> int:
    """About sqrt(n) lists (FAISS's guide for IVF), never fewer than 39 training codes per list."""
    return int(max(1, min(round(math.sqrt(n)), n // IVF_MIN_POINTS_PER_LIST)))
