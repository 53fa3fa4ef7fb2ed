"""evaluate_category(): a hand-computed case, and every metric against brute force over (query, category) pairs."""

from __future__ import annotations

import numpy as np
import pytest

from deephash.errors import DeephashError
from deephash.evaluation import evaluate_category

import eval_reference as ref

# 2 categories, 8-bit codes, 2 queries, 3 database images; codes[i, c] is image i's code for category c.
HAND = dict(
    query_codes=np.array([[[0x00], [0x00]], [[0x03], [0x00]]], np.uint8),
    db_codes=np.array([[[0x00], [0x00]], [[0x00], [0x0F]], [[0x03], [0xFF]]], np.uint8),
    query_labels=np.array([[1, 0], [1, 1]], np.uint8),
    db_labels=np.array([[1, 0], [0, 1], [1, 1]], np.uint8),
)


def test_hand_computed_pairs():
    """Pairs (q0, c0), (q1, c0), (q1, c1). (q0, c0): db0, db1 tied at 0, db2 at 2; relevant db0, db2 (db1 lacks
    c0): stable AP (1 + 2/3)/2, tie-aware (3/4 + 2/3)/2. (q1, c0): db2 at 0, db0 and db1 tied at 2; db1 shares
    label 1 with q1 but lacks c0, so it is not relevant: stable AP 1, tie-aware (1 + 5/6)/2. (q1, c1): db0 0,
    db1 4, db2 8; relevant db1, db2: AP (1/2 + 2/3)/2."""
    got = evaluate_category(**HAND, topk=(), ndcg_k=())
    assert got["n_queries"] == got["n_queries_evaluated"] == 3 and got["pairs_per_category"] == [2, 1]
    assert got["metrics"]["mAP"]["deterministic"] == pytest.approx((5 / 6 + 1 + 7 / 12) / 3, abs=1e-15)
    assert got["metrics"]["mAP"]["tie_aware"] == pytest.approx((17 / 24 + 11 / 12 + 7 / 12) / 3, abs=1e-15)


def test_hand_computed_semantic_ties():
    """Semantic codes put db1 before db0 for both queries: (q0, c0) becomes db1, db0, db2 (AP 7/12) and (q1, c0)
    db2, db1, db0 (AP 5/6); tie-aware values do not depend on the tie-break."""
    sem = dict(query_semantic=np.array([[0x00], [0x00]], np.uint8),
               db_semantic=np.array([[0xFF], [0x00], [0x0F]], np.uint8))
    got = evaluate_category(**HAND, **sem, topk=(), ndcg_k=())
    assert got["metrics"]["mAP"]["deterministic"] == pytest.approx((7 / 12 + 5 / 6 + 7 / 12) / 3, abs=1e-15)
    assert got["metrics"]["mAP"]["tie_aware"] == pytest.approx((17 / 24 + 11 / 12 + 7 / 12) / 3, abs=1e-15)
    assert "semantic-code distance" in got["rules"]["ties"]["deterministic"] and got["semantic_ties"]


def reference_pairs(qc, dc, ql, dl, qs, ds, topk, ndcg_k, radius, tie_aware):
    """One row of metric values per (query, category it contains) whose category some database image holds."""
    rows = []
    for c in range(ql.shape[1]):
        for i in np.flatnonzero(ql[:, c]):
            d = ref.distances(qc[i, c], dc[:, c])
            g = [ref.gains(ql[i], dl[j:j + 1])[0] if dl[j, c] else 0 for j in range(len(dc))]
            if not any(g):
                continue
            if tie_aware:
                value = lambda f, *a, **kw: ref.tie_aware(f, d, g, *a, **kw)  # noqa: E731
            else:
                s = ref.distances(qs[i], ds) if qs is not None else [0] * len(dc)
                order = sorted(range(len(dc)), key=lambda j: (d[j], s[j], j))
                value = lambda f, *a, **kw: f([g[j] for j in order], *a, **kw)  # noqa: E731
            row = {"mAP": value(ref.ap), "wAP": value(ref.ap, weighted=True)}
            for k in topk:
                row |= {f"mAP@{k}": value(ref.ap, k), f"wAP@{k}": value(ref.ap, k, weighted=True),
                        f"P@{k}": value(ref.precision_at, k)}
            for k in ndcg_k:
                row |= {f"NDCG@{k}": value(ref.ndcg_at, k), f"ACG@{k}": value(ref.acg_at, k)}
            row[f"P@H<={radius}"], row[f"R@H<={radius}"] = ref.radius_pr(d, g, radius)
            rows.append(row)
    return rows


def random_category_case(rng, nq, ndb, n_cat=4, n_values=4, nbytes=1):
    """Category codes drawn from a few values (ties everywhere); category 3 absent from the database."""
    values = rng.integers(0, 256, (n_values, n_cat, nbytes), dtype=np.uint8)
    qc, dc = values[rng.integers(0, n_values, nq)], values[rng.integers(0, n_values, ndb)]
    ql = (rng.random((nq, n_cat)) < 0.45).astype(np.uint8)
    dl = (rng.random((ndb, n_cat)) < 0.45).astype(np.uint8)
    dl[:, 3] = 0
    ql[0, 3] = 1
    sem = rng.integers(0, 256, (n_values, nbytes), dtype=np.uint8)
    return qc, dc, ql, dl, sem[rng.integers(0, n_values, nq)], sem[rng.integers(0, n_values, ndb)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("semantic", [False, True])
def test_deterministic_matches_brute_force(seed, semantic):
    rng = np.random.default_rng(seed)
    qc, dc, ql, dl, qs, ds = random_category_case(rng, nq=8, ndb=int(rng.integers(20, 40)))
    topk, ndcg_k, radius = (3, 10), (5,), int(rng.integers(0, 8))
    sem = dict(query_semantic=qs, db_semantic=ds) if semantic else {}
    got = evaluate_category(qc, dc, ql, dl, topk=topk, ndcg_k=ndcg_k, radius=radius, **sem)
    rows = reference_pairs(qc, dc, ql, dl, qs if semantic else None, ds, topk, ndcg_k, radius, tie_aware=False)
    assert got["n_queries_evaluated"] == len(rows) and got["n_queries"] == int(ql.sum())
    assert got["n_queries_without_relevant"] == int(ql[:, 3].sum())
    assert set(got["metrics"]) == set(rows[0])
    for name in rows[0]:
        want = float(np.mean([r[name] for r in rows]))
        assert got["metrics"][name]["deterministic"] == pytest.approx(want, abs=1e-12), name


@pytest.mark.parametrize("seed", range(3))
def test_tie_aware_matches_mean_over_tie_orderings(seed):
    rng = np.random.default_rng(20 + seed)
    qc, dc, ql, dl, qs, ds = random_category_case(rng, nq=4, ndb=7, n_values=3)
    topk, ndcg_k = (2, 5), (3,)
    rows = reference_pairs(qc, dc, ql, dl, None, None, topk, ndcg_k, 2, tie_aware=True)
    for sem in ({}, dict(query_semantic=qs, db_semantic=ds)):
        got = evaluate_category(qc, dc, ql, dl, topk=topk, ndcg_k=ndcg_k, **sem)
        assert set(got["metrics"]) == set(rows[0])
        for name in rows[0]:
            want = float(np.mean([r[name] for r in rows]))
            assert got["metrics"][name]["tie_aware"] == pytest.approx(want, abs=1e-12), name


def test_empty_zero_counts_pairs_without_relevant_as_zero():
    rng = np.random.default_rng(7)
    qc, dc, ql, dl, _, _ = random_category_case(rng, nq=8, ndb=30)
    ex = evaluate_category(qc, dc, ql, dl)
    zero = evaluate_category(qc, dc, ql, dl, empty="zero")
    n_ex, n_zero = ex["n_queries_evaluated"], zero["n_queries_evaluated"]
    assert n_zero == int(ql.sum()) > n_ex
    for kind in ("deterministic", "tie_aware"):
        assert zero["metrics"]["mAP"][kind] == pytest.approx(ex["metrics"]["mAP"][kind] * n_ex / n_zero)
    assert "(query, category) pairs" in zero["rules"]["empty"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(query_codes=np.zeros((2, 2), np.uint8)), "packed uint8 \\(n, categories"),
        (dict(db_codes=np.zeros((3, 3, 1), np.uint8)), "differ in categories"),
        (dict(query_labels=np.ones((2, 3), np.uint8), db_labels=np.ones((3, 3), np.uint8)), "3 classes but"),
        (dict(db_labels=np.array([[0, 0], [0, 0], [0, 0]], np.uint8)), "no \\(query, category\\) pair"),
        (dict(query_semantic=np.zeros((2, 1), np.uint8)), "database codes must be"),
    ],
)
def test_bad_inputs(change, message):
    with pytest.raises(DeephashError, match=message):
        evaluate_category(**(HAND | change))
