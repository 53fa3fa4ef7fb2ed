"""evaluate(): every metric against plain-loop references and brute force over tie orderings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deephash.errors import DeephashError
from deephash.evaluation import evaluate

import eval_reference as ref
from eval_reference import random_case

RANKED = {  # metric name prefix -> reference on the ranked gains
    "mAP@": lambda g, k: ref.ap(g, k),
    "wAP@": lambda g, k: ref.ap(g, k, weighted=True),
    "P@": ref.precision_at,
    "NDCG@": ref.ndcg_at,
    "ACG@": ref.acg_at,
}


def reference_metrics(q, db, ql, dl, topk, ndcg_k, radius, curve_k, empty, kind):
    per_query = []
    for i in range(len(q)):
        d, g = ref.distances(q[i], db), ref.gains(ql[i], dl)
        has = any(g)
        if not has and empty == "exclude":
            continue
        row = {}
        for name in ("mAP", "wAP"):
            row[name] = kind(RANKED[name + "@"], d, g, len(db)) if has else 0.0
            for k in topk:
                row[f"{name}@{k}"] = kind(RANKED[name + "@"], d, g, k) if has else 0.0
        for k in topk:
            row[f"P@{k}"] = kind(ref.precision_at, d, g, k)
        for k in ndcg_k:
            row[f"NDCG@{k}"] = kind(ref.ndcg_at, d, g, k)
            row[f"ACG@{k}"] = kind(ref.acg_at, d, g, k)
        row[f"P@H<={radius}"], row[f"R@H<={radius}"] = ref.radius_pr(d, g, radius)
        row["curve"] = [kind(ref.precision_at, d, g, k) for k in curve_k]
        row["pr"] = [ref.radius_pr(d, g, r) for r in range(len(db[0]) * 8 + 1)]
        per_query.append(row)
    return per_query


def mean(rows, key):
    return float(np.mean([r[key] for r in rows], axis=0)) if np.ndim(rows[0][key]) == 0 else np.mean(
        [r[key] for r in rows], axis=0
    )


def check(got, rows, which):
    names = set(rows[0]) - {"curve", "pr"}
    assert set(got["metrics"]) == names
    for name in names:
        assert got["metrics"][name][which] == pytest.approx(mean(rows, name), abs=1e-12), name
    assert got["curves"]["precision_at_k"][which] == pytest.approx(mean(rows, "curve").tolist(), abs=1e-12)
    pr = np.mean([r["pr"] for r in rows], axis=0)
    assert got["curves"]["pr_radius"]["precision"] == pytest.approx(pr[:, 0].tolist(), abs=1e-12)
    assert got["curves"]["pr_radius"]["recall"] == pytest.approx(pr[:, 1].tolist(), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("empty", ["exclude", "zero"])
@pytest.mark.parametrize("single_label", [False, True])
def test_deterministic_metrics_match_reference(seed, empty, single_label):
    rng = np.random.default_rng(seed)
    ndb = int(rng.integers(25, 50))
    q, db, ql, dl = random_case(rng, nq=10, ndb=ndb, n_classes=5, p_label=0.4, single_label=single_label)
    topk, ndcg_k, curve_k, radius = (3, 10), (4, 12), (1, 2, 7, 20), int(rng.integers(0, 8))
    got = evaluate(q, db, ql, dl, topk=topk, ndcg_k=ndcg_k, radius=radius, curve_k=curve_k, empty=empty)
    rows = reference_metrics(q, db, ql, dl, topk, ndcg_k, radius, curve_k, empty, ref.deterministic)
    assert got["n_queries_evaluated"] == len(rows)
    check(got, rows, "deterministic")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("single_label", [False, True])
def test_tie_aware_metrics_equal_mean_over_all_tie_orderings(seed, single_label):
    rng = np.random.default_rng(50 + seed)
    q, db, ql, dl = random_case(rng, nq=3, ndb=7, n_values=3, n_classes=3, p_label=0.5, single_label=single_label)
    topk, ndcg_k, curve_k = (2, 5), (1, 3, 6), (1, 4, 7)
    got = evaluate(q, db, ql, dl, topk=topk, ndcg_k=ndcg_k, radius=3, curve_k=curve_k, empty="zero")
    rows = reference_metrics(q, db, ql, dl, topk, ndcg_k, 3, curve_k, "zero", ref.tie_aware)
    check(got, rows, "tie_aware")


def test_all_codes_equal_gives_analytic_values():
    """One tie group: expected precision anywhere = fraction relevant, expected gain = mean gain."""
    n, bits = 40, 16
    rng = np.random.default_rng(1)
    dl = (rng.random((n, 4)) < 0.4).astype(np.uint8)
    ql = np.ones((1, 4), dtype=np.uint8)
    g = dl.sum(1).astype(float)
    q, db = np.zeros((1, bits // 8), np.uint8), np.zeros((n, bits // 8), np.uint8)
    got = evaluate(q, db, ql, dl, topk=(1, 7, n), ndcg_k=(5,), radius=3, curve_k=(1, 13))
    frac = float((g > 0).mean())
    m = got["metrics"]
    for key in ("P@1", "P@7", f"P@{n}"):
        assert m[key]["tie_aware"] == pytest.approx(frac, abs=1e-12)
    assert got["curves"]["precision_at_k"]["tie_aware"] == pytest.approx([frac, frac], abs=1e-12)
    assert m["P@H<=3"]["tie_aware"] == pytest.approx(frac) and m["R@H<=3"]["tie_aware"] == 1.0
    assert got["curves"]["pr_radius"]["precision"] == pytest.approx([frac] * (bits + 1))
    assert m["ACG@5"]["tie_aware"] == pytest.approx(g.mean(), abs=1e-12)
    ideal = sum((2**v - 1) / np.log2(i + 2) for i, v in enumerate(sorted(g, reverse=True)[:5]))
    expected_dcg = (2**g - 1).mean() * sum(1 / np.log2(i + 2) for i in range(5))
    assert m["NDCG@5"]["tie_aware"] == pytest.approx(expected_dcg / ideal, abs=1e-12)


def test_report_is_json_and_states_its_rules():
    rng = np.random.default_rng(2)
    q, db, ql, dl = random_case(rng, nq=8, ndb=30)
    got = evaluate(q, db, ql, dl, topk=(5, 100), protocol="cifar10-1")
    again = json.loads(json.dumps(got))
    assert again["protocol"] == "cifar10-1" and again["bits"] == 8
    assert set(again["rules"]) >= {"ties", "empty", "ap", "radius", "relevance", "graded"}
    assert "database position" in again["rules"]["ties"]["deterministic"]
    assert any("topk 100" in note for note in again["notes"])
    assert all(set(v) == {"deterministic", "tie_aware"} for v in again["metrics"].values())


def test_nothing_within_radius_counts_as_precision_zero():
    q = np.zeros((2, 1), np.uint8)
    db = np.array([[0b11110000], [0b00000000]], np.uint8)
    ql = np.array([[1, 0], [0, 1]], np.uint8)
    dl = np.array([[1, 0], [0, 1]], np.uint8)
    got = evaluate(q, db, ql, dl, topk=(1,), ndcg_k=(1,), radius=2)
    # query 0's only relevant item is at distance 4; the item at distance 0 is not relevant
    assert got["metrics"]["P@H<=2"]["deterministic"] == pytest.approx(0.5)
    q2 = np.full((1, 1), 0b00001111, np.uint8)
    got = evaluate(q2, db, ql[:1], dl, topk=(1,), ndcg_k=(1,), radius=2)
    assert got["radius"]["n_queries_nothing_retrieved"] == 1
    assert got["metrics"]["P@H<=2"]["deterministic"] == 0.0


@pytest.mark.parametrize("kwargs, message", [({"radius": 9}, "radius must be"), ({"bits": 16}, "bits=16")])
def test_evaluate_bad_arguments(kwargs, message):
    q, db = np.zeros((1, 1), np.uint8), np.zeros((3, 1), np.uint8)
    with pytest.raises(DeephashError, match=message):
        evaluate(q, db, np.ones((1, 1)), np.ones((3, 1)), **kwargs)


@pytest.mark.slow
def test_large_database_runs_in_bounded_memory():
    """2k queries x 200k database: chunking over queries keeps numpy's peak far below nq x ndb."""
    import tracemalloc

    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (2000, 8), dtype=np.uint8)
    db = rng.integers(0, 256, (200_000, 8), dtype=np.uint8)
    ql = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, 2000)]
    dl = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, 200_000)]
    tracemalloc.start()
    try:
        got = evaluate(q, db, ql, dl, topk=(1000, 5000), progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # one dense float64 nq x ndb would be 3 GiB
    assert 0.05 < got["metrics"]["mAP"]["tie_aware"] < 0.2


def test_no_k_values_is_allowed():
    rng = np.random.default_rng(5)
    q, db, ql, dl = random_case(rng, nq=4, ndb=20)
    got = evaluate(q, db, ql, dl, topk=(), ndcg_k=(), curve_k=())
    assert list(got["metrics"]) == ["mAP", "wAP", "P@H<=2", "R@H<=2"]
    assert got["curves"]["precision_at_k"]["k"] == []
