"""Exactness of every engine against a brute-force reference (ties by insertion position)."""

import numpy as np
import pytest

from deephash.codes import hamming_distances
from deephash.errors import DeephashError
from deephash.index import HammingIndex, create_engine, list_engines
from deephash.index import hamming_index as hi_mod
from deephash.index.engines import engine_class


def _needs_no_settings(name) -> bool:
    try:
        create_engine(name, 64)
    except DeephashError:  # e.g. a server's uri: tests/test_conformance.py gives it one
        return False
    return True


# From the registry: every exact engine a HammingIndex can search with engine=... and no settings, by its tie
# rule, and "auto", HammingIndex's own policy. (Every engine, approximate and remote ones too, against a brute
# force: tests/test_conformance.py.)
_EXACT = [n for n in list_engines() if engine_class(n).exact is True and _needs_no_settings(n)]
EXACT_ENGINES = [n for n in _EXACT if engine_class(n).ties == "position"] + ["auto"]  # ties by insertion position
OWN_TIES = [n for n in _EXACT if engine_class(n).ties != "position"]  # e.g. faiss-flat: FAISS's order in ties


def ref_knn(q, db, ids, k):
    d = hamming_distances(q, db)
    pos = np.broadcast_to(np.arange(len(db)), d.shape)
    order = np.lexsort((pos, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def ref_range(q, db, ids, r):
    d = hamming_distances(q, db)
    out = []
    for row in d:
        hit = np.flatnonzero(row <= r)
        hit = hit[np.lexsort((hit, row[hit]))]
        out.append((row[hit], ids[hit]))
    return out


def make(rng, n, bits, distinct=None):
    if distinct is None:
        return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    pool = rng.integers(0, 256, (distinct, bits // 8), dtype=np.uint8)
    return pool[rng.integers(0, distinct, n)]


def check_knn(index, q, db, ids, k, engine):
    D, I = index.search(q, k, engine=engine)
    assert D.shape == I.shape == (len(q), k) and D.dtype == np.int32 and I.dtype == np.int64
    kk = min(k, len(db))
    rd, ri = ref_knn(q, db, ids, kk)
    if engine in OWN_TIES:  # ties in the engine's own order: compare distance multisets
        np.testing.assert_array_equal(np.sort(D[:, :kk], 1), rd)
    else:
        np.testing.assert_array_equal(D[:, :kk], rd)
        np.testing.assert_array_equal(I[:, :kk], ri)
    assert (D[:, kk:] == -1).all() and (I[:, kk:] == -1).all()


def check_range(index, q, db, ids, r, engine):
    lims, D, I = index.range_search(q, r, engine=engine)
    assert lims.shape == (len(q) + 1,) and lims[0] == 0 and lims[-1] == len(I) == len(D)
    for i, (rd, ri) in enumerate(ref_range(q, db, ids, r)):
        got_d, got_i = D[lims[i] : lims[i + 1]], I[lims[i] : lims[i + 1]]
        if engine in OWN_TIES:
            assert sorted(got_i.tolist()) == sorted(ri.tolist())
        else:
            np.testing.assert_array_equal(got_d, rd)
            np.testing.assert_array_equal(got_i, ri)


@pytest.mark.parametrize("bits", [8, 16, 24, 64, 128, 256])
@pytest.mark.parametrize("engine", EXACT_ENGINES + OWN_TIES)
def test_knn_and_range_match_brute_force(bits, engine):
    rng = np.random.default_rng(bits)
    n = 700
    db = make(rng, n, bits)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    q = np.concatenate([make(rng, 12, bits), db[:4]])  # some queries are database codes (distance 0)
    index = HammingIndex(bits)
    index.add(db, ids=ids)
    for k in (1, 7, 64, n + 5):
        check_knn(index, q, db, ids, k, engine)
    radii = range(bits + 1) if bits <= 24 else [0, 1, 2, 5, bits // 4, bits // 2, bits]
    for r in radii:
        check_range(index, q[:6], db, ids, r, engine)


@pytest.mark.parametrize("engine", EXACT_ENGINES)
@pytest.mark.parametrize("bits", [16, 64, 128])
def test_heavy_ties_break_by_insertion_position(bits, engine):
    rng = np.random.default_rng(1)
    db = make(rng, 3000, bits, distinct=5)
    ids = np.arange(3000, dtype=np.int64)[::-1].copy()  # ids opposite to positions
    q = make(rng, 8, bits, distinct=5)
    index = HammingIndex(bits)
    index.add(db, ids=ids)
    for k in (1, 10, 700, 2999):
        check_knn(index, q, db, ids, k, engine)
    for r in (0, 1, bits // 2):
        check_range(index, q, db, ids, r, engine)


@pytest.mark.parametrize("m", [3, 4, 5, 8, 64])
def test_mih_any_number_of_substrings(m):
    rng = np.random.default_rng(m)
    db = make(rng, 2000, 64, distinct=400)
    q = make(rng, 10, 64)
    ids = np.arange(2000, dtype=np.int64)
    index = HammingIndex(64, engine="mih", engine_settings={"m": m})
    index.add(db)
    assert index._engine(None).m == m
    for k in (1, 10, 300):
        check_knn(index, q, db, ids, k, None)
    for r in sorted({0, 1, m - 1, 3, 9, 20}):  # r < m: exact-bucket kernel; r >= m: general probing
        check_range(index, q, db, ids, r, None)


def test_auto_falls_back_to_scan_per_query_and_stays_exact(monkeypatch):
    monkeypatch.setattr(hi_mod, "SMALL_N", 0)
    rng = np.random.default_rng(3)
    db = make(rng, 5000, 64, distinct=2500)
    ids = np.arange(5000, dtype=np.int64)
    q = np.concatenate([make(rng, 40, 64), db[:40]])
    index = HammingIndex(64)
    index.add(db)
    eng = index._engine(None)
    assert eng.name == "mih"
    for budget in (0, 2000, 10**9):
        eng.budget = eng.range_budget = budget
        check_knn(index, q, db, ids, 10, None)
        check_range(index, q, db, ids, 4, None)
    eng.budget = eng.range_budget = 0
    stats = {}
    eng.search(q, 10, fallback=True, stats=stats)  # the per-query hand-over is reported to the caller
    assert stats["fallback"] == len(q)
    eng.range_search(q, 4, fallback=True, stats=stats)
    assert stats["fallback"] == len(q)
    eng.range_search(q, 4, stats=stats)  # an explicit "mih" never hands over
    assert stats["fallback"] == 0
    seen = []
    search = eng.search
    monkeypatch.setattr(eng, "search", lambda *a, **kw: seen.append(kw) or search(*a, **kw))
    index.search(q, 10)
    index.search(q, 10, engine="mih")
    assert [kw.get("fallback", False) for kw in seen] == [True, False]


def test_mih_keeps_a_radius_query_whose_results_outgrow_any_fixed_buffer():
    """70,000 copies of one code: one probe step of the query next to them yields them all, more than the
    65,536 keys MIH once held per step (it then handed the query to the scan). MIH answers it itself."""
    rng = np.random.default_rng(5)
    base = make(rng, 1, 64)
    db = np.concatenate([np.repeat(base, 70_000, axis=0), make(rng, 30_000, 64)])
    db[rng.permutation(len(db))[:5000], 3] ^= 4  # some copies one bit away, so two distances interleave
    ids = np.arange(len(db), dtype=np.int64)
    q = np.concatenate([base, base ^ np.uint8(1), make(rng, 2, 64)])
    index = HammingIndex(64, engine="mih")
    index.add(db)
    eng = index._engine(None)
    for r in (eng.m - 1, eng.m):  # the exact-bucket kernel, then general probing
        stats = {}
        lims, D, I = eng.range_search(q, r, stats=stats)
        assert stats["fallback"] == 0 and lims[1] >= 70_000
        check_range(index, q, db, ids, r, None)


def test_add_remove_keep_order_and_ids():
    rng = np.random.default_rng(4)
    a, b = make(rng, 300, 32, distinct=20), make(rng, 200, 32, distinct=20)
    index = HammingIndex(32)
    ids_a = index.add(a)
    ids_b = index.add(b)
    np.testing.assert_array_equal(ids_a, np.arange(300))
    np.testing.assert_array_equal(ids_b, np.arange(300, 500))
    assert index.remove([3, 4, 450]) == 3
    assert len(index) == 497
    keep = np.setdiff1d(np.arange(500), [3, 4, 450])
    db = np.concatenate([a, b])[keep]
    q = make(rng, 5, 32, distinct=20)
    for engine in EXACT_ENGINES:
        check_knn(index, q, db, keep, 50, engine)
    assert (index.add(a[:2]) == [500, 501]).all()  # new ids never reuse removed ones


def test_empty_index_and_empty_queries():
    index = HammingIndex(64)
    D, I = index.search(np.zeros((2, 8), np.uint8), 3)
    assert (I == -1).all() and (D == -1).all()
    lims, D, I = index.range_search(np.zeros((2, 8), np.uint8), 5)
    assert lims.tolist() == [0, 0, 0] and len(I) == 0
    index.add(np.zeros((3, 8), np.uint8))
    D, I = index.search(np.zeros((0, 8), np.uint8), 3)
    assert D.shape == (0, 3)
    D, I = index.search(np.zeros(8, np.uint8), 2)  # a single 1-D query
    assert I.tolist() == [[0, 1]]


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: HammingIndex(12), "multiple of 8"),
        (lambda: HammingIndex(0), "multiple of 8"),
        (lambda: HammingIndex(1032), "multiple of 8"),
        (lambda: HammingIndex(64, engine="hnsw"), "unknown engine"),
        (lambda: HammingIndex(64, engine_options={"mih": {"m": 65}}), "mih setting m"),
        (lambda: HammingIndex(64, engine_options={"mih": {"m": 2}}), "setting m must be between 3 and 64"),
        (lambda: HammingIndex(64).add(np.zeros((3, 4), np.uint8)), "do not match"),
        (lambda: HammingIndex(64).add(np.zeros((3, 64), np.float32)), "packed uint8"),
        (lambda: HammingIndex(64).add(np.zeros((3, 8), np.uint8), ids=[1, 1, 2]), "duplicate ids"),
        (lambda: HammingIndex(64).add(np.zeros((3, 8), np.uint8), ids=[1, 2]), "2 ids for 3 codes"),
        (lambda: HammingIndex(64).add(np.zeros((1, 8), np.uint8), ids=[-4]), "non-negative"),
        (lambda: HammingIndex(64).add(np.zeros((1, 8), np.uint8), metadata=[1]), "dicts"),
        (lambda: HammingIndex(64).search(np.zeros((1, 16), np.uint8), 3), "do not match"),
        (lambda: HammingIndex(64).search(np.zeros((1, 8), np.uint8), 0), "positive"),
        (lambda: HammingIndex(64).range_search(np.zeros((1, 8), np.uint8), -1), "non-negative"),
        (lambda: HammingIndex(64).remove([7]), "not in the index"),
    ],
)
def test_bad_inputs_raise_deephash_error(call, msg):
    with pytest.raises(DeephashError, match=msg):
        call()


def test_duplicate_ids_across_batches():
    index = HammingIndex(16)
    index.add(np.zeros((2, 2), np.uint8), ids=[5, 6])
    with pytest.raises(DeephashError, match="already in the index"):
        index.add(np.zeros((1, 2), np.uint8), ids=[6])
    assert len(index) == 2


def test_metadata_roundtrip_in_memory():
    index = HammingIndex(8)
    index.add(np.arange(3, dtype=np.uint8)[:, None], ids=[10, 11, 12],
              metadata=[{"path": "a.jpg", "labels": [1, 0]}, None, {"note": "x"}])
    assert index.get_metadata([10, 11, 12, 99]) == [{"path": "a.jpg", "labels": [1, 0]}, None, {"note": "x"}, None]


@pytest.mark.parametrize("m", [3, 4, 6])
def test_mih_per_query_table_order_on_clustered_codes(m):
    """Clustered codes make a query's exact buckets very unequal across tables, so MIH probes them in
    a per-query order (smallest first); results must stay exact, ties by insertion position."""
    rng = np.random.default_rng(10 + m)
    centres = make(rng, 4, 64)

    def draw(count):
        noise = rng.integers(0, 256, (count, 8), dtype=np.uint8)
        for _ in range(3):
            noise &= rng.integers(0, 256, (count, 8), dtype=np.uint8)  # each bit flipped w.p. 1/16
        return centres[rng.integers(0, 4, count)] ^ noise

    db, q = draw(6000), draw(30)
    ids = np.arange(6000, dtype=np.int64)[::-1].copy()
    index = HammingIndex(64, engine="mih", engine_settings={"m": m})
    index.add(db, ids=ids)
    eng = index._engine(None)
    sizes = np.array([[np.diff(eng.offs[eng.offs_base[j] + key:][:2])[0] for j, key in enumerate(row)]
                      for row in eng._qkeys(q)])
    assert (sizes.argmin(1) != 0).sum() >= 5  # many queries do not start with table 0
    for k in (1, 10, 200):
        check_knn(index, q, db, ids, k, None)
    for r in range(0, 2 * m + 2):
        check_range(index, q, db, ids, r, None)


def test_faiss_ivf_is_approximate_but_never_wrong_and_exact_when_every_list_is_scanned(tmp_path):
    rng = np.random.default_rng(7)
    centres = make(rng, 20, 64)
    db = centres[rng.integers(0, 20, 4000)] ^ (make(rng, 4000, 64) & make(rng, 4000, 64) & make(rng, 4000, 64))
    q = np.concatenate([make(rng, 10, 64), db[:10]])
    ids = np.arange(4000, dtype=np.int64)
    index = HammingIndex(64, engine="faiss-ivf", engine_settings={"nlist": 50, "nprobe": 2})
    index.add(db, ids=ids)
    D, I = index.search(q, 20)
    true = hamming_distances(q, db)
    rows = np.arange(len(q))[:, None]
    found = I >= 0  # the probed lists may hold fewer than k codes: the rest are -1, as when k > n
    assert found[:, 0].all() and ((D >= 0) == found).all() and (found[:, :-1] >= found[:, 1:]).all()
    np.testing.assert_array_equal(D[found], true[rows, I][found])  # distances of what it returns are exact
    assert all((np.diff(row[ok]) >= 0).all() for row, ok in zip(D, found))
    rd, _ = ref_knn(q, db, ids, 20)
    assert (D[found] >= rd[found]).all() and (D[10:, 0] == 0).all()  # never closer than the truth; finds itself
    engine = index._engine(None)
    index.set_ivf_nprobe(50)  # every list scanned: exact distances (which of the codes tied at the k-th is FAISS's)
    assert index._engine(None) is engine  # no new k-means
    np.testing.assert_array_equal(index.search(q, 20)[0], rd)
    check_range(index, q, db, ids, 6, None)
    index.save(tmp_path / "ivf")
    loaded = HammingIndex.load(tmp_path / "ivf")
    assert (loaded.engine, loaded.settings_of()) == ("faiss-ivf", {"nlist": 50, "nprobe": 50})
    with pytest.raises(DeephashError, match="setting nprobe must be a positive integer"):
        HammingIndex(64, engine_options={"faiss-ivf": {"nprobe": 0}})
