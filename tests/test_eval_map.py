"""mean_average_precision against plain-loop references, brute force over tie orderings, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deephash.errors import DeephashError
from deephash.evaluation import mean_average_precision

import eval_reference as ref
from eval_reference import random_case


def reference_mean(kind, metric, q, db, ql, dl, empty, *args, **kw):
    vals = []
    for i in range(len(q)):
        d, g = ref.distances(q[i], db), ref.gains(ql[i], dl)
        if not any(g):
            if empty == "exclude":
                continue
            vals.append(0.0)
            continue
        vals.append(kind(metric, d, g, *args, **kw))
    return sum(vals) / len(vals), len(vals)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_deterministic_matches_reference(seed, weighted):
    rng = np.random.default_rng(seed)
    q, db, ql, dl = random_case(rng, nq=12, ndb=int(rng.integers(20, 60)), nbytes=int(rng.integers(1, 3)))
    for topk in (None, 1, 5, int(rng.integers(1, len(db))), len(db) + 10):
        for empty in ("exclude", "zero"):
            k = None if topk is None else min(topk, len(db))
            want, n = reference_mean(ref.deterministic, ref.ap, q, db, ql, dl, empty, k, weighted)
            got = mean_average_precision(q, db, ql, dl, topk=topk, empty=empty, weighted=weighted)
            assert got["deterministic"] == pytest.approx(want, abs=1e-12)
            assert got["n_queries_evaluated"] == n


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("weighted", [False, True])
def test_tie_aware_equals_mean_over_all_tie_orderings(seed, weighted):
    rng = np.random.default_rng(100 + seed)
    q, db, ql, dl = random_case(rng, nq=4, ndb=7, n_values=3, p_label=0.45)
    for topk in (None, 1, 2, 3, 4, 5, 6):
        want, _ = reference_mean(ref.tie_aware, ref.ap, q, db, ql, dl, "zero", topk, weighted)
        got = mean_average_precision(q, db, ql, dl, topk=topk, empty="zero", weighted=weighted)
        assert got["tie_aware"] == pytest.approx(want, abs=1e-12)


def test_no_ties_makes_both_rules_agree():
    rng = np.random.default_rng(7)
    db = np.array([[0b00000000], [0b00000001], [0b00000011], [0b00000111], [0b00001111]], dtype=np.uint8)
    q = np.zeros((1, 1), dtype=np.uint8)
    dl = rng.integers(0, 2, (5, 3)).astype(np.uint8)
    ql = np.ones((1, 3), dtype=np.uint8)
    for topk in (None, 2, 4):
        got = mean_average_precision(q, db, ql, dl, topk=topk)
        assert got["tie_aware"] == pytest.approx(got["deterministic"], abs=1e-15)


@pytest.mark.parametrize("n,r", [(1, 1), (2, 1), (10, 3), (50, 50), (1000, 17), (5000, 1200)])
def test_all_codes_equal_gives_expected_ap_of_a_random_ranking(n, r):
    """One tie group: E[AP] = (r-1)/(n-1) + (n-r)/(n-1) * H_n / n (Bestgen 2015)."""
    q = np.zeros((1, 2), dtype=np.uint8)
    db = np.zeros((n, 2), dtype=np.uint8)
    ql = np.array([[1, 0]], dtype=np.uint8)
    dl = np.zeros((n, 2), dtype=np.uint8)
    dl[:, 1] = 1
    dl[n - r :, 0] = 1  # relevant items last, so the stable order is the worst one
    h_n = sum(1.0 / i for i in range(1, n + 1))
    expected = 1.0 if n == 1 else (r - 1) / (n - 1) + (n - r) / (n - 1) * h_n / n
    got = mean_average_precision(q, db, ql, dl)
    assert got["tie_aware"] == pytest.approx(expected, rel=1e-9)
    worst = sum((i + 1) / (n - r + i + 1) for i in range(r)) / r
    assert got["deterministic"] == pytest.approx(worst, rel=1e-12)


def test_all_codes_equal_ap_at_k_matches_brute_force():
    n, r = 7, 3
    q = np.zeros((1, 1), dtype=np.uint8)
    db = np.zeros((n, 1), dtype=np.uint8)
    ql = np.array([[1]], dtype=np.uint8)
    dl = np.array([[1]] * r + [[0]] * (n - r), dtype=np.uint8)
    for k in range(1, n + 1):
        want = ref.tie_aware(ref.ap, [0] * n, [1] * r + [0] * (n - r), k)
        assert mean_average_precision(q, db, ql, dl, topk=k)["tie_aware"] == pytest.approx(want, abs=1e-12)
        assert mean_average_precision(q, db, ql, dl, topk=k)["deterministic"] == pytest.approx(1.0)


def test_large_tie_group_at_the_cut_is_exact_and_finite():
    """The hypergeometric at the cut must stay accurate for big groups (no factorial overflow)."""
    n, r, k = 20000, 7000, 5000
    q = np.zeros((1, 1), dtype=np.uint8)
    db = np.zeros((n, 1), dtype=np.uint8)
    ql = np.array([[1]], dtype=np.uint8)
    dl = np.array([[1]] * r + [[0]] * (n - r), dtype=np.uint8)
    got = mean_average_precision(q, db, ql, dl, topk=k)["tie_aware"]
    # Y ~ Hypergeom concentrates near k r / n, and E[AP@k | y] = (y-1)/(k-1) + (k-y)/(k-1) * H_k / k.
    y = np.arange(0, k + 1)
    logc = lambda a, b: np.array([math.lgamma(a + 1) - math.lgamma(bb + 1) - math.lgamma(a - bb + 1) for bb in b])  # noqa: E731
    logp = logc(r, y) + logc(n - r, k - y) - math.lgamma(n + 1) + math.lgamma(k + 1) + math.lgamma(n - k + 1)
    h_k = sum(1.0 / i for i in range(1, k + 1))
    cond = np.where(y > 0, (y - 1) / (k - 1) + (k - y) / (k - 1) * h_k / k, 0.0)
    assert got == pytest.approx(float((np.exp(logp) * cond).sum()), rel=1e-8)


def test_empty_queries_excluded_or_zero():
    q = np.array([[0], [0], [0]], dtype=np.uint8)
    db = np.array([[0], [1], [3]], dtype=np.uint8)
    ql = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.uint8)  # the second query has nothing relevant
    dl = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.uint8)
    ex = mean_average_precision(q, db, ql, dl, empty="exclude")
    zero = mean_average_precision(q, db, ql, dl, empty="zero")
    full = (1 + 2 / 3) / 2
    assert ex["deterministic"] == pytest.approx(full)
    assert zero["deterministic"] == pytest.approx(full * 2 / 3)
    assert (ex["n_queries_evaluated"], ex["n_queries_without_relevant"]) == (2, 1)
    assert (zero["n_queries_evaluated"], zero["n_queries_without_relevant"]) == (3, 1)
    assert "left out" in ex["rules"]["empty"] and "as 0" in zero["rules"]["empty"]


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(3)
    q, db, ql, dl = random_case(rng, nq=37, ndb=50, n_values=10)
    whole = mean_average_precision(q, db, ql, dl, topk=9)
    monkeypatch.setattr("deephash.evaluation.ranking.CHUNK_ELEMENTS", 120)  # 2 queries per chunk
    chunked = mean_average_precision(q, db, ql, dl, topk=9)
    assert chunked["deterministic"] == pytest.approx(whole["deterministic"], abs=1e-14)
    assert chunked["tie_aware"] == pytest.approx(whole["tie_aware"], abs=1e-14)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "db_codes": np.zeros((5, 2), np.uint8)}, "code widths differ"),
        (lambda a: {**a, "db_labels": np.zeros((4, 2), np.uint8)}, "label rows"),
        (lambda a: {**a, "query_labels": None}, "labels are missing"),
        (lambda a: {**a, "query_labels": np.zeros((2, 3), np.uint8)}, "label widths differ"),
        (lambda a: {**a, "query_labels": np.array([0, 1])}, "2-D multi-hot"),
        (lambda a: {**a, "query_codes": np.zeros((0, 1), np.uint8)}, "query set is empty"),
        (lambda a: {**a, "db_codes": np.zeros((5, 1), np.int64)}, "packed uint8"),
        (lambda a: {**a, "topk": 0}, "positive integers"),
        (lambda a: {**a, "empty": "skip"}, "empty must be one of"),
        (lambda a: {**a, "query_labels": np.zeros((2, 2), np.uint8)}, "no query has a relevant item"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message):
    args = dict(
        query_codes=np.zeros((2, 1), np.uint8),
        db_codes=np.zeros((5, 1), np.uint8),
        query_labels=np.eye(2, dtype=np.uint8),
        db_labels=np.eye(2, dtype=np.uint8)[[0, 1, 0, 1, 0]],
    )
    with pytest.raises(DeephashError, match=message):
        mean_average_precision(**change(args))
