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
