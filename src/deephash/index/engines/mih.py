"""Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014).

Codes are split into m disjoint substrings, each indexed by one table. By pigeonhole, a
code within distance r of the query has some substring within floor(r/m) of the
query's; more precisely, writing r = m*a + b, of ANY b+1 tables one is within a, or one
of the others within a-1. So probing, at step r = 0, 1, 2, ..., the (r mod m)-th table of
a per-query order at substring radius (r div m) has found every code within r after step
r: exact range search, and exact k-NN by growing r until k codes lie within it. The order
puts the query's smallest exact buckets first (``kernels.mih._table_order``).

Tables are CSR buckets built by a counting sort over substring values (no dicts), and
each table keeps its own copy of the codes in bucket order when memory allows, so a
bucket is verified by a contiguous scan instead of random reads. A radius below m needs only
exact buckets (substring radius 0), so those searches take a batched kernel that loads the
bucket offsets of many queries before verifying any (``kernels.mih.mih_range_exact_buckets``).

A saved index stores each table's order and reordered codes (``tables``), so a load restores the tables
instead of building them (seconds at 10M codes) on its first search.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import InvalidInputError
from ..kernels import mih as kernels
from ..threads import run_parallel
from .base import SnapshotEngine, register_engine
from .flat import concat_ranges, flat_knn_keys, flat_range_keys

MAX_SUBSTRING_BITS = 24  # direct bucket tables of 2^w offsets stay <= 128 MiB each
REORDER_BUDGET_BYTES = 2 << 30  # per-table reordered code copies, in total
NO_BUDGET = np.iinfo(np.int64).max


def choose_m(bits: int, n: int) -> int:
    """m ~ bits / log2(n) (substring buckets hold about one code), width capped for the tables."""
    m = round(bits / math.log2(max(n, 2)))
    return int(min(bits, max(m, 1, math.ceil(bits / MAX_SUBSTRING_BITS))))


def _describe(a) -> str:
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


@register_engine("mih")
class MIHEngine(SnapshotEngine):
    """Exact MIH. Setting ``m``: substrings (None: about bits/log2(n), chosen at build). Searches take
    ``fallback=True`` to hand a query to the linear scan once it has cost about a scan (the ``auto``
    policy) and ``stats`` (a caller's dict) to learn how many did."""

    exact = True
    rank = 1
    persistent = True  # a saved index stores the tables (``tables``), a load restores them
    defaults = {"m": None}

    def _validate(self, s: dict) -> dict:
        lo = -(-self.bits // MAX_SUBSTRING_BITS)
        m = s["m"]
        if m is not None and (not isinstance(m, (int, np.integer)) or isinstance(m, bool)
                              or not lo <= m <= self.bits):
            raise InvalidInputError(f"mih setting m must be between {lo} and {self.bits} for {self.bits}-bit codes "
                                f"(substrings of at most {MAX_SUBSTRING_BITS} bits), got {m!r}")
        return {"m": None if m is None else int(m)}

    def _build(self, codes: np.ndarray, words: np.ndarray) -> None:
        n = len(codes)
        self._layout(words, choose_m(self.bits, n) if self._settings["m"] is None else self._settings["m"])
        perm = np.empty((self.m, n), np.int64)
        pcodes = np.empty((self.m if self.reordered else 0, n, self.W), np.uint64)
        offs = []
        for j in range(self.m):
            keys = kernels.substring_keys(codes, int(self.starts[j]), int(self.widths[j]))
            o, perm[j] = kernels.counting_sort(keys, 1 << int(self.widths[j]))
            offs.append(o)
            if self.reordered:
                np.take(words, perm[j], axis=0, out=pcodes[j])
        self._finish(offs, perm, pcodes.reshape(-1))

    def _layout(self, words: np.ndarray, m: int) -> None:
        """The substrings of m tables, and whether the tables keep reordered copies of the codes."""
        self.m = m
        edges = np.linspace(0, self.bits, m + 1).round().astype(np.int64)
        self.starts, self.widths = edges[:-1], np.diff(edges)
        self.db = words.reshape(-1)
        self.reordered = m * words.nbytes <= REORDER_BUDGET_BYTES
        self.masks = np.zeros((m, self.W), np.uint64)
        for j in range(m):
            sel = np.zeros(self.W * 64, np.uint8)
            sel[self.starts[j] : self.starts[j] + self.widths[j]] = 1
            self.masks[j] = np.packbits(sel).view(np.uint64)

    def _finish(self, offs: list[np.ndarray], perm: np.ndarray, pcodes: np.ndarray) -> None:
        self.offs_base = np.zeros(self.m + 1, np.int64)
        np.cumsum([len(o) for o in offs], out=self.offs_base[1:])
        self.offs = np.concatenate(offs)
        self.perm = perm
        self.pcodes = pcodes
        # Give up on a query once its cost (verified candidates + kernels.PROBE_COST per bucket probed)
        # passes n/24, roughly a whole scan's worth. Measured at 10M x 64 bits, 10-NN, 200 queries:
        # with a probe weighing 8, random codes stayed in MIH at 42% of the scan's QPS (440 vs 1047); a
        # lower budget (n/48) fixed that but sent 10-centre clustered queries to the scan (4601 -> 1915
        # QPS). Weighing a probe 64 sends every random query to the scan (1621 vs flat 1640 QPS) and
        # keeps clustered ones in MIH (10 centres 7981 QPS, 100 centres 29227, flat 1200-1480).
        self.budget = max(self.n // 24, 4096)
        # A radius search verifies each bucket's codes, contiguous in the table's reordered copy, in one
        # vectorised pass like the scan's, and writes results as the scan does: it stays cheaper than the
        # scan until it would verify about as many codes. On learned 48-bit codes at 1M, n/24 (measured for
        # k-NN) handed radius 1-2 queries to a scan slower than MIH for them (docs/search.md).
        self.range_budget = max(self.n // 2, 4096)

    def tables(self) -> tuple[dict, dict[str, np.ndarray]]:
        """What a saved index keeps so that a load skips the build: the slow part, each table's order of the
        codes and its reordered copy of them (a scatter and a gather over all codes). The bucket offsets are
        not stored (2^width entries per table, mostly larger than the rest): a load recounts them from the
        codes in one sequential pass."""
        return {"m": self.m}, {"perm": self.perm, "pcodes": self.pcodes}

    def _restore(self, codes: np.ndarray, words: np.ndarray, params: dict, arrays: dict) -> None:
        m = params.get("m")
        lo = -(-self.bits // MAX_SUBSTRING_BITS)
        if not isinstance(m, int) or isinstance(m, bool) or not lo <= m <= self.bits:
            raise InvalidInputError(f"mih tables with m={m!r} for {self.bits}-bit codes")
        if self._settings["m"] is not None and self._settings["m"] != m:
            raise InvalidInputError(f"mih tables with m={m} for an engine set to m={self._settings['m']}")
        n = len(codes)
        self._layout(words, m)
        perm, pcodes = arrays.get("perm"), arrays.get("pcodes")
        if not isinstance(perm, np.ndarray) or perm.dtype != np.int64 or perm.shape != (m, n):
            raise InvalidInputError(f"mih table order of {_describe(perm)}, expected ({m}, {n}) int64")
        if not isinstance(pcodes, np.ndarray) or pcodes.dtype != np.uint64 or pcodes.shape not in (
                (0,), (m * n * self.W,)):
            raise InvalidInputError(f"mih reordered codes of {_describe(pcodes)}, expected ({m * n * self.W},) uint64")
        if n and (perm.min() < 0 or perm.max() >= n):  # the kernels read without bounds checks
            raise InvalidInputError(f"mih table order holds positions outside 0..{n - 1}")
        self.reordered = len(pcodes) > 0
        offs = []
        for j in range(m):
            keys = kernels.substring_keys(codes, int(self.starts[j]), int(self.widths[j]))
            o = np.zeros((1 << int(self.widths[j])) + 1, np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << int(self.widths[j])), out=o[1:])
            offs.append(o)
        self._finish(offs, perm, pcodes)

    def _qkeys(self, qcodes: np.ndarray) -> np.ndarray:
        out = np.empty((len(qcodes), self.m), np.int64)
        for j in range(self.m):
            out[:, j] = kernels.substring_keys(qcodes, int(self.starts[j]), int(self.widths[j]))
        return out

    def _args(self):
        return (self.widths, self.offs, self.offs_base, self.perm, self.pcodes, self.reordered, self.db, self.masks)

    def search(self, q, k, *, threads: int = 1, fallback: bool = False, stats: dict | None = None):
        return super().search(q, k, threads=threads, fallback=fallback, stats=stats)

    def range_search(self, q, r, *, threads: int = 1, fallback: bool = False, stats: dict | None = None):
        return super().range_search(q, r, threads=threads, fallback=fallback, stats=stats)

    def _knn_keys(self, qcodes, qwords, k: int, threads: int, fallback: bool, stats: dict | None) -> np.ndarray:
        nq = len(qwords)
        qkeys = self._qkeys(qcodes)
        out = np.empty((nq, k), np.int64)
        failed = np.zeros(nq, np.bool_)
        budget = self.budget if fallback else NO_BUDGET

        def job(s, e):
            kernels.mih_knn(
                qwords[s:e].reshape(-1), self.W, self.bits, k, qkeys[s:e], *self._args(), budget, out[s:e], failed[s:e]
            )

        # Probe a small sample first: if most of it fails (long codes, random data, big k)
        # a linear scan over the whole batch is cheaper than spending each query's budget.
        head = min(nq, 8) if fallback and nq > 32 else nq
        run_parallel(job, head, threads)
        if head < nq:
            if failed[:head].mean() > 0.5:
                failed[head:] = True
            else:
                run_parallel(lambda s, e: job(head + s, head + e), nq - head, threads)
        if failed.any():
            idx = np.flatnonzero(failed)
            out[idx] = flat_knn_keys(self.db, self.W, self.n, np.ascontiguousarray(qwords[idx]), k, threads)
        if stats is not None:
            stats["fallback"] = int(failed.sum())
        return out

    def _range_keys(self, qcodes, qwords, r: int, threads: int, fallback: bool, stats: dict | None):
        nq = len(qwords)
        qkeys = self._qkeys(qcodes)
        failed = np.zeros(nq, np.bool_)
        budget = self.range_budget if fallback else NO_BUDGET
        results = {}

        def job(s, e):
            if r < self.m and self.reordered:
                results[s] = kernels.mih_range_exact_buckets(
                    qwords[s:e].reshape(-1), self.W, r, qkeys[s:e], self.offs, self.offs_base, self.perm,
                    self.pcodes, self.masks, budget, failed[s:e], np.zeros(1, np.uint64))
            else:
                results[s] = kernels.mih_range(
                    qwords[s:e].reshape(-1), self.W, self.bits, r, qkeys[s:e], *self._args(), budget, failed[s:e]
                )

        run_parallel(job, nq, threads)
        lims, keys = concat_ranges([results[s] for s in sorted(results)], nq)
        if stats is not None:
            stats["fallback"] = int(failed.sum())
        if not failed.any():
            return lims, keys
        idx = np.flatnonzero(failed)
        flims, fkeys = flat_range_keys(self.db, self.W, self.n, np.ascontiguousarray(qwords[idx]), r, threads)
        counts = np.diff(lims)
        counts[idx] = np.diff(flims)
        parts = [keys[lims[i] : lims[i + 1]] for i in range(nq)]
        for t, i in enumerate(idx):
            parts[i] = fkeys[flims[t] : flims[t + 1]]
        out_lims = np.zeros(nq + 1, np.int64)
        np.cumsum(counts, out=out_lims[1:])
        return out_lims, np.concatenate(parts) if parts else keys
