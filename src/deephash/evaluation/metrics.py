"""Per-query metric kernels on one chunk of queries, each in a deterministic and a tie-aware form.

Deterministic kernels read the stable ranking (ties by database position); tie-aware kernels
read only the per-distance histograms and return the exact expectation over orderings of
ties (see ``ties``). Every kernel returns one value per query, 0 for a query with nothing
relevant; which queries are averaged is decided by the caller's empty-query rule.

Definitions (rank i = 1, 2, ...; rel_i binary relevance, gain_i = number of shared labels):

* AP@K  = sum_{i<=K, rel_i} P@i / #{i<=K : rel_i}, and 0 when the top K holds nothing relevant.
  This is the convention of public deep hashing code (DeepHash, DPSH): the denominator is the
  number of relevant items *retrieved in the top K*, not all relevant items. AP = AP@ndb.
* wAP@K = same with P@i replaced by ACG@i (weighted mAP of DSRH, Zhao et al. 2015, and IAH).
* P@K   = #{i<=K : rel_i} / K.
* ACG@K = sum_{i<=K} gain_i / K.
* NDCG@K = DCG@K / IDCG@K, DCG@K = sum_{i<=K} (2^gain_i - 1) / log2(i + 1), IDCG@K the DCG@K
  of the ideal order (by gain, descending); 0 when nothing is relevant.
* P and R within Hamming radius r: relevant / retrieved and relevant / all relevant over the
  items at distance <= r. These are set metrics, so ties cannot change them; a query that
  retrieves nothing has precision 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ranking import Chunk, row_histograms, stable_order
from .ties import _div, expected_group_sum, expected_ratio_at_cut


@dataclass
class Histograms:
    """Per query and distance value (c, bits+1): items, relevant items, gain, DCG gain."""

    n: np.ndarray
    rel: np.ndarray
    gain: np.ndarray
    dcg_gain: np.ndarray

    @classmethod
    def of(cls, chunk: Chunk, bits: int) -> "Histograms":
        nb = bits + 1
        return cls(
            n=row_histograms(chunk.dist, nb),
            rel=row_histograms(chunk.dist, nb, chunk.relevant),
            gain=row_histograms(chunk.dist, nb, chunk.gain),
            dcg_gain=row_histograms(chunk.dist, nb, np.exp2(chunk.gain) - 1),
        )

    @property
    def n_relevant(self) -> np.ndarray:
        return self.rel.sum(axis=1)


@dataclass
class Sorted:
    """The deterministic ranking of one chunk: relevance and gain in stable distance order."""

    rel: np.ndarray
    gain: np.ndarray

    @classmethod
    def of(cls, chunk: Chunk) -> "Sorted":
        order = stable_order(chunk.dist)
        return cls(np.take_along_axis(chunk.relevant, order, 1), np.take_along_axis(chunk.gain, order, 1))


def _exclusive_cumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a, axis=1) - a


def ap_tie_aware(h: Histograms, H: np.ndarray, ks, weighted: bool = False) -> dict[int, np.ndarray]:
    """Expected AP@K (or wAP@K) over orderings of ties, for each K in ``ks``.

    Groups wholly above the cut contribute their expected numerator (``expected_group_sum``);
    the group the cut falls in makes the denominator random and is handled exactly by
    ``expected_ratio_at_cut``.
    """
    gain = h.gain if weighted else h.rel
    n_before = _exclusive_cumsum(h.n)
    rel_before = _exclusive_cumsum(h.rel)
    gain_before = _exclusive_cumsum(gain)
    mean_gain = _div(gain, h.rel)
    s = expected_group_sum(H, n_before, gain_before, h.n, h.rel, mean_gain)
    total_n = h.n.sum(axis=1)
    out = {}
    for k in ks:
        if k >= total_n.max():
            out[k] = _div(s.sum(axis=1), h.n_relevant)
            continue
        g = (np.cumsum(h.n, axis=1) < k).sum(axis=1)
        rows = np.arange(len(g))
        pick = lambda a: a[rows, g]  # noqa: E731
        out[k] = expected_ratio_at_cut(
            H,
            pick(n_before).astype(np.int64),
            pick(rel_before),
            pick(gain_before),
            pick(_exclusive_cumsum(s)),
            pick(h.n).astype(np.int64),
            pick(h.rel).astype(np.int64),
            pick(mean_gain),
            k - pick(n_before).astype(np.int64),
        )
    return out


def ap_deterministic(srt: Sorted, ks, weighted: bool = False) -> dict[int, np.ndarray]:
    """AP@K (or wAP@K) of the stable ranking, for each K in ``ks``."""
    ranks = np.arange(1, srt.rel.shape[1] + 1, dtype=np.float64)
    cum_rel = np.cumsum(srt.rel, axis=1, dtype=np.float64)
    cum_gain = np.cumsum(srt.gain, axis=1, dtype=np.float64) if weighted else cum_rel
    num = np.cumsum(np.where(srt.rel, cum_gain / ranks, 0.0), axis=1)
    return {k: _div(num[:, k - 1], cum_rel[:, k - 1]) for k in ks}


def discount_prefix(n: int) -> np.ndarray:
    """D[0..n], D[i] = sum_{j=1..i} 1/log2(j+1): DCG weight of the first i ranks."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64)))])


def _expected_prefix(n: np.ndarray, values: np.ndarray, k: int, weights: np.ndarray | None) -> np.ndarray:
    """E[sum_{i<=K} w_i x_i] over tie orderings: each rank in a group holds the group's mean x.

    ``values`` are per-group sums of x; ``weights`` the prefix sums of w (None: w = 1).
    """
    after = np.minimum(np.cumsum(n, axis=1), k).astype(np.int64)
    before = np.minimum(np.cumsum(n, axis=1) - n, k).astype(np.int64)
    cover = (after - before) if weights is None else (weights[after] - weights[before])
    return (_div(values, n) * cover).sum(axis=1)


def precision_at_k(h: Histograms, srt: Sorted, ks) -> tuple[np.ndarray, np.ndarray]:
    """P@K for each K: (deterministic, tie_aware), each (c, len(ks))."""
    cum_rel = np.cumsum(srt.rel[:, : max(ks)], axis=1, dtype=np.float64)
    det = np.stack([cum_rel[:, k - 1] / k for k in ks], axis=1)
    tie = np.stack([_expected_prefix(h.n, h.rel, k, None) / k for k in ks], axis=1)
    return det, tie


def acg_at_k(h: Histograms, srt: Sorted, ks) -> tuple[np.ndarray, np.ndarray]:
    """ACG@K for each K: (deterministic, tie_aware), each (c, len(ks))."""
    cum_gain = np.cumsum(srt.gain[:, : max(ks)], axis=1, dtype=np.float64)
    det = np.stack([cum_gain[:, k - 1] / k for k in ks], axis=1)
    tie = np.stack([_expected_prefix(h.n, h.gain, k, None) / k for k in ks], axis=1)
    return det, tie


def ideal_dcg(gain: np.ndarray, ks, D: np.ndarray) -> np.ndarray:
    """IDCG@K from the histogram of gain levels: the best order puts high gains first."""
    levels = int(gain.max(initial=0)) + 1
    count = row_histograms(gain.astype(np.int64), levels)[:, ::-1]  # highest gain first
    value = np.exp2(np.arange(levels - 1, -1, -1, dtype=np.float64)) - 1
    return np.stack([_expected_prefix(count, count * value, k, D) for k in ks], axis=1)


def ndcg_at_k(h: Histograms, srt: Sorted, gain: np.ndarray, ks, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@K for each K: (deterministic, tie_aware). The ideal DCG is order-free, so the
    tie-aware value is E[DCG@K] / IDCG@K exactly."""
    top = srt.gain[:, : max(ks)].astype(np.float64)
    dcg = np.cumsum((np.exp2(top) - 1) * np.diff(D[: top.shape[1] + 1]), axis=1)
    ideal = ideal_dcg(gain, ks, D)
    det = _div(np.stack([dcg[:, k - 1] for k in ks], axis=1), ideal)
    tie = _div(np.stack([_expected_prefix(h.n, h.dcg_gain, k, D) for k in ks], axis=1), ideal)
    return det, tie


def radius_precision_recall(h: Histograms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and retrieved count within every radius 0..bits, each (c, bits+1).

    Set metrics: the same under any tie order. Nothing retrieved gives precision 0.
    """
    retrieved = np.cumsum(h.n, axis=1)
    hits = np.cumsum(h.rel, axis=1)
    return _div(hits, retrieved), _div(hits, h.n_relevant[:, None]), retrieved
