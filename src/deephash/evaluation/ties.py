"""Closed forms for the expected value of ranking metrics over random orderings of ties.

Items at equal Hamming distance form a *tie group*; the tie-aware value of a metric is its
exact mean over all orderings inside every group (McSherry & Najork, ECIR 2008; He et al.,
CVPR 2018). Groups are ordered by distance, so only orderings inside a group are random,
and different groups are permuted independently.

The one building block is a group of ``n`` items, ``r`` of them relevant, whose relevant
items carry total gain ``g`` (mean gain ``m = g / r``; binary relevance has ``m = 1``),
preceded by ``N`` items of total gain ``G``. For a relevant item at position ``p`` in the
group (uniform on 1..n) the other ``p - 1`` items before it are a random subset of the other
``n - 1``, whose total gain is ``g - gain_i``; summing ``(G + gain_i + gain before) / (N + p)``
over the relevant items and averaging over ``p`` gives::

    E[sum] = (r/n) * [ (G + m) * dH + (r-1)/(n-1) * m * (n - (N+1) * dH) ]
    dH     = H(N+n) - H(N) = sum_{p=1..n} 1/(N+p),   sum_{p=1..n} (p-1)/(N+p) = n - (N+1) dH

with H the harmonic numbers and (r-1)/(n-1) read as 0 when n = 1. With binary gains this is
the expected sum of precisions of the group's relevant items (AP numerator); with graded
gains it is the expected sum of ACG@rank (weighted-AP numerator).
"""

from __future__ import annotations

import numpy as np


def harmonic(n_max: int) -> np.ndarray:
    """H[0..n_max], H[m] = sum_{i=1..m} 1/i, so ``H[a+b] - H[a]`` sums 1/(a+1)..1/(a+b)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n_max + 1, dtype=np.float64))])


def safe_div(a, b):
    """a / b with 0 where b == 0: an empty group or query contributes nothing."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.divide(a, b, out=np.zeros(a.shape), where=b != 0)


def expected_group_sum(H, n_before, gain_before, n, r, mean_gain):
    """E[sum over the group's relevant items of (gain up to and including it) / rank].

    All arguments broadcast; ``n_before`` and ``n`` are integer counts (indices into ``H``).
    """
    n_before = np.asarray(n_before, dtype=np.int64)
    n_int = np.asarray(n, dtype=np.int64)
    n = n_int.astype(np.float64)
    dH = H[n_before + n_int] - H[n_before]
    frac = safe_div(np.asarray(r, dtype=np.float64) - 1, n - 1)
    body = (gain_before + mean_gain) * dH + frac * mean_gain * (n - (n_before + 1) * dH)
    return safe_div(r, n) * body


def hypergeometric_grid(n, r, k):
    """pmf of Y = relevant items among ``k`` drawn from ``n`` holding ``r`` relevant, per row.

    Returns ``(y, p)``, both (rows, J): the support ``y = y_lo + j`` and its probability (0
    past the row's upper end). Built from the ratio p(y+1)/p(y) in log space and normalised,
    which is exact up to rounding and needs no special functions.
    """
    n = np.asarray(n, dtype=np.int64)
    r = np.asarray(r, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    y_lo = np.maximum(0, k - (n - r))
    y_hi = np.minimum(k, r)
    span = int((y_hi - y_lo).max(initial=0))
    y = y_lo[:, None] + np.arange(span + 1)[None, :]
    valid = y <= y_hi[:, None]
    ys = y[:, :-1].astype(np.float64)
    num = (r[:, None] - ys) * (k[:, None] - ys)
    den = (ys + 1) * (n[:, None] - r[:, None] - k[:, None] + ys + 1)
    step_ok = valid[:, 1:]
    log_ratio = np.log(np.where(step_ok, num, 1.0)) - np.log(np.where(step_ok, den, 1.0))
    logw = np.concatenate([np.zeros((len(n), 1)), np.cumsum(log_ratio, axis=1)], axis=1)
    logw = np.where(valid, logw, -np.inf)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return y, w / w.sum(axis=1, keepdims=True)


def expected_ratio_at_cut(H, n_before, rel_before, gain_before, sum_before, n, r, mean_gain, k):
    """E[(numerator) / (relevant items in the top K)] when the cut K falls inside a group.

    The group (n items, r relevant) straddles the cut: its first ``k`` positions are in
    the top K. ``sum_before`` is the expected numerator of the groups fully above the cut
    (independent of this group's order), ``rel_before`` their relevant count. With Y ~
    Hypergeometric(n, r, k) relevant items inside the cut, given Y = y the window holds a
    random y of the r relevant items, so the group's expected contribution is the closed
    form of the module docstring with (n, r) replaced by (k, y). A value with no relevant
    item in the top K is 0.
    """
    y, p = hypergeometric_grid(n, r, k)
    col = lambda a: np.asarray(a, dtype=np.float64)[:, None]  # noqa: E731
    t = expected_group_sum(
        H, np.asarray(n_before)[:, None], col(gain_before), np.asarray(k)[:, None], y, col(mean_gain)
    )
    values = safe_div(col(sum_before) + t, col(rel_before) + y)
    return (p * values).sum(axis=1)
