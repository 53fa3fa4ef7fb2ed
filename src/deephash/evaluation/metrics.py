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

from .ranking import Chunk, stable_order
from .ties import expected_group_sum, expected_ratio_at_cut, safe_div


@dataclass
class Histograms:
    """Per query and distance value (c, bits+1): items, relevant items, gain, DCG gain;
    plus per query and gain value (c, levels) the item counts, for the ideal DCG."""

    n: np.ndarray
    rel: np.ndarray
    gain: np.ndarray
    dcg_gain: np.ndarray
    level_counts: np.ndarray

    @classmethod
    def of(cls, chunk: Chunk) -> "Histograms":
        joint = chunk.joint_histogram().astype(np.float64)
        level = np.arange(chunk.levels, dtype=np.float64)
        n = joint.sum(axis=2)
        return cls(
            n=n,
            rel=n - joint[:, :, 0],
            gain=joint @ level,
            dcg_gain=joint @ (np.exp2(level) - 1),
            level_counts=joint.sum(axis=1),
        )

    @property
    def n_relevant(self) -> np.ndarray:
        return self.rel.sum(axis=1)


@dataclass
class Sorted:
    """The relevant items of the deterministic ranking, as flat arrays in row-major order.

    Only relevant items change AP, P@K, ACG and DCG sums, so everything deterministic is a
    per-row sum over them. ``key = row * ndb + pos`` (pos: 0-based place in the stable order)
    is sorted, so "relevant items of row q in the top K" is one contiguous slice. ``hits`` is
    the 1-based count of relevant items up to each one, ``cum_gain`` the gain up to it.
    """

    n_rows: int
    n_cols: int
    key: np.ndarray
    pos: np.ndarray
    gain: np.ndarray
    hits: np.ndarray
    cum_gain: np.ndarray

    @classmethod
    def of(cls, chunk: Chunk) -> "Sorted":
        ranked = np.take_along_axis(chunk.gain, stable_order(chunk.dist), axis=1)
        c, ndb = ranked.shape
        key = np.flatnonzero(ranked > 0)
        row, pos = np.divmod(key, ndb)
        gain = ranked.ravel()[key].astype(np.float64)
        first = np.searchsorted(key, np.arange(c) * ndb)[row]
        cum = np.cumsum(gain)
        hits = np.arange(1, len(key) + 1, dtype=np.float64) - first
        return cls(c, ndb, key, pos, gain, hits, cum - np.concatenate([[0.0], cum])[first])

    def top_sums(self, ks, weights: np.ndarray | None = None) -> np.ndarray:
        """(rows, len(ks)): per row, the sum of ``weights`` (count when None) over relevant
        items in the top K; two binary searches per (row, K) on the sorted keys."""
        base = np.arange(self.n_rows, dtype=np.int64)[:, None] * self.n_cols
        ends = np.searchsorted(self.key, base + np.asarray(ks, dtype=np.int64)[None, :])
        starts = np.searchsorted(self.key, base)
        if weights is None:
            return (ends - starts).astype(np.float64)
        total = np.concatenate([[0.0], np.cumsum(weights)])
        return total[ends] - total[starts]


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
    mean_gain = safe_div(gain, h.rel)
    s = expected_group_sum(H, n_before, gain_before, h.n, h.rel, mean_gain)
    total_n = h.n.sum(axis=1)
    out = {}
    for k in ks:
        if k >= total_n.max():
            out[k] = safe_div(s.sum(axis=1), h.n_relevant)
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
    terms = (srt.cum_gain if weighted else srt.hits) / (srt.pos + 1)
    ap = safe_div(srt.top_sums(ks, terms), srt.top_sums(ks))
    return {k: ap[:, i] for i, k in enumerate(ks)}


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
    return (safe_div(values, n) * cover).sum(axis=1)


def _per_k(n: np.ndarray, values: np.ndarray, ks, weights: np.ndarray | None = None) -> np.ndarray:
    """(c, len(ks)) of ``_expected_prefix`` for each K (an empty ``ks`` gives no columns)."""
    cols = [_expected_prefix(n, values, k, weights) for k in ks]
    return np.stack(cols, axis=1) if cols else np.zeros((len(n), 0))


def precision_at_k(h: Histograms, srt: Sorted, ks) -> tuple[np.ndarray, np.ndarray]:
    """P@K for each K: (deterministic, tie_aware), each (c, len(ks))."""
    det = srt.top_sums(ks) / np.asarray(ks)
    tie = _per_k(h.n, h.rel, ks) / np.asarray(ks)
    return det, tie


def acg_at_k(h: Histograms, srt: Sorted, ks) -> tuple[np.ndarray, np.ndarray]:
    """ACG@K for each K: (deterministic, tie_aware), each (c, len(ks))."""
    det = srt.top_sums(ks, srt.gain) / np.asarray(ks)
    tie = _per_k(h.n, h.gain, ks) / np.asarray(ks)
    return det, tie


def ndcg_at_k(h: Histograms, srt: Sorted, ks, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@K for each K: (deterministic, tie_aware). The ideal DCG does not depend on the
    order of ties, so the tie-aware value E[DCG@K] / IDCG@K is exact."""
    count = h.level_counts[:, ::-1]  # the ideal order puts the highest gain first
    value = np.exp2(np.arange(count.shape[1] - 1, -1, -1, dtype=np.float64)) - 1
    dcg_terms = (np.exp2(srt.gain) - 1) * (D[srt.pos + 1] - D[srt.pos])
    ideal = _per_k(count, count * value, ks, D)
    det = safe_div(srt.top_sums(ks, dcg_terms), ideal)
    tie = safe_div(_per_k(h.n, h.dcg_gain, ks, D), ideal)
    return det, tie


def radius_precision_recall(h: Histograms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and retrieved count within every radius 0..bits, each (c, bits+1).

    Set metrics: the same under any tie order. Nothing retrieved gives precision 0.
    """
    retrieved = np.cumsum(h.n, axis=1)
    hits = np.cumsum(h.rel, axis=1)
    return safe_div(hits, retrieved), safe_div(hits, h.n_relevant[:, None]), retrieved
