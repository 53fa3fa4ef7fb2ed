"""Slow, obviously-correct references for the evaluation tests: plain loops over sorted lists."""

from __future__ import annotations

import itertools
import math

import numpy as np


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b))


def distances(q_code, db_codes) -> list[int]:
    return [hamming(q_code, d) for d in db_codes]


def gains(q_label, db_labels) -> list[int]:
    return [int(sum(int(a) * int(b) for a, b in zip(q_label, d))) for d in db_labels]


def stable_order(dists) -> list[int]:
    return sorted(range(len(dists)), key=lambda j: (dists[j], j))


def tie_orderings(dists):
    """Every ranking consistent with the distances: all permutations inside each tie group."""
    groups = [[j for j in range(len(dists)) if dists[j] == d] for d in sorted(set(dists))]
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [j for p in perms for j in p]


def ap(ranked_gains, k=None, weighted=False) -> float:
    k = len(ranked_gains) if k is None else k
    hits, cum_gain, total = 0, 0, 0.0
    for i, g in enumerate(ranked_gains[:k], start=1):
        cum_gain += g
        if g > 0:
            hits += 1
            total += (cum_gain if weighted else hits) / i
    return total / hits if hits else 0.0


def precision_at(ranked_gains, k) -> float:
    return sum(1 for g in ranked_gains[:k] if g > 0) / k


def acg_at(ranked_gains, k) -> float:
    return sum(ranked_gains[:k]) / k


def dcg_at(ranked_gains, k) -> float:
    return sum((2**g - 1) / math.log2(i + 1) for i, g in enumerate(ranked_gains[:k], start=1))


def ndcg_at(ranked_gains, k) -> float:
    ideal = dcg_at(sorted(ranked_gains, reverse=True), k)
    return dcg_at(ranked_gains, k) / ideal if ideal > 0 else 0.0


def radius_pr(dists, gs, r) -> tuple[float, float]:
    got = [g for d, g in zip(dists, gs) if d <= r]
    hits = sum(1 for g in got if g > 0)
    n_rel = sum(1 for g in gs if g > 0)
    return (hits / len(got) if got else 0.0), (hits / n_rel if n_rel else 0.0)


def deterministic(metric, dists, gs, *args, **kw) -> float:
    return metric([gs[j] for j in stable_order(dists)], *args, **kw)


def tie_aware(metric, dists, gs, *args, **kw) -> float:
    values = [metric([gs[j] for j in order], *args, **kw) for order in tie_orderings(dists)]
    return sum(values) / len(values)


def random_case(rng, nq, ndb, n_values=6, n_classes=4, p_label=0.35, nbytes=1, single_label=False):
    """Codes drawn from a few values so Hamming ties are everywhere; sparse multi-hot labels
    (some rows empty, so some queries have nothing relevant) or one-hot labels."""
    values = rng.integers(0, 256, size=(n_values, nbytes), dtype=np.uint8)
    q = values[rng.integers(0, n_values, nq)]
    db = values[rng.integers(0, n_values, ndb)]
    if single_label:
        eye = np.eye(n_classes, dtype=np.uint8)
        return q, db, eye[rng.integers(0, n_classes, nq)], eye[rng.integers(0, n_classes, ndb)]
    ql = (rng.random((nq, n_classes)) < p_label).astype(np.uint8)
    dl = (rng.random((ndb, n_classes)) < p_label).astype(np.uint8)
    return q, db, ql, dl
