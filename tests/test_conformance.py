"""Conformance of every registered plug-in, in the manner of scikit-learn's ``check_estimator``: each method in
``deephash.methods.list_methods()`` and each index engine in ``deephash.index.list_engines()`` is held to the
contract every plug-in promises, so a new ``@register_method`` or ``@register_engine`` is tested here without
a test of its own (one registered before collection, e.g. by a conftest or a ``-p`` plugin, is picked up too).

Methods: one epoch on 60 digits at 12 bits (not a whole number of bytes) and 32 px, finite loss terms, codes of the right
shape with zero padding bits, a checkpoint that reloads to the same weights and codes, shards that are the
whole encode's rows, feature vectors from the same pass, bad settings refused with ``InvalidInputError``.

Engines: k-NN and radius search against a brute force (numpy XOR + popcount) on codes with many ties and
non-monotone int64 ids: distances always exact, and ties as the engine declares (``IndexEngine.ties``:
"position": rows equal the brute force's exactly; "found-position"/"found-id": everything closer than the k-th
distance comes back, ordered by position/id within a distance; "engine": the engine's own order); -1 for
missing slots; an empty engine; bad queries, k and radii refused; a snapshot
engine refusing add/remove; and through ``HammingIndex``, add/remove/ids on every engine. An engine that
needs settings to run at all (a server uri) gets them from ``engine_settings`` below; an approximate one is
checked for exactness only when its test settings make it exhaustive (``EXHAUSTIVE``).
"""

from __future__ import annotations

import math
from itertools import count

import numpy as np
import pytest
import torch

from deephash.codes import unpack_bits
from deephash.data import load_source
from deephash.errors import DeephashError, InvalidInputError, NotFoundError
from deephash.index import HammingIndex, create_engine, list_engines
from deephash.index.engines import engine_class
from deephash.runs import encode, get_method, list_methods, load_trained
from deephash.train import TrainConfig, train

BITS = 12  # codes of 1.5 bytes: the padding bits must come out zero

# ---- methods -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits60():
    return load_source("digits")["all"].subset(np.arange(60))


@pytest.fixture(scope="module", params=list_methods())
def run(request, digits60, tmp_path_factory):
    """One epoch of each registered method on 60 digits: (name, config, TrainResult, the checkpoint loaded, its
    codes of the 60 images). Every encode here runs the same batches of 20, so no two differ by rounding."""
    name = request.param
    cfg = TrainConfig(method=name, bits=BITS, image_size=32, epochs=1, batch_size=30, threads=1,
                      out=str(tmp_path_factory.mktemp(f"m-{name}") / "run"))
    res = train(cfg, digits60, progress=False)
    loaded = load_trained(res.checkpoint)
    return name, cfg, res, loaded, encode(loaded, digits60, batch_size=BATCH, progress=False)


BATCH = 20


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_method_trains_with_finite_loss_terms(run):
    name, cfg, res, _, _ = run
    assert len(res.history) == 1 and res.history[0]["epoch"] == 1
    terms = {k: v for k, v in res.history[0].items() if k not in ("epoch", "step", "seconds")}
    assert "loss" in terms, f"{name} logs no 'loss'"
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in terms.values()), terms
    assert all(torch.isfinite(t).all() for t in res.model.state_dict().values() if t.is_floating_point())


def test_method_codes_have_the_configured_bits(run):
    name, cfg, res, _, e = run
    assert e.bits == BITS and e.codes.dtype == np.uint8 and e.codes.shape == (60, math.ceil(BITS / 8))
    np.testing.assert_array_equal(e.indices, np.arange(60))
    assert not e.failures
    bits = np.unpackbits(e.codes, axis=1)
    assert not bits[:, BITS:].any(), f"{name}: padding bits past bit {BITS} are set"
    np.testing.assert_array_equal(unpack_bits(e.codes, BITS), bits[:, :BITS])


def test_method_checkpoint_reloads_to_the_same_model_and_codes(run, digits60):
    name, cfg, res, t, e = run
    assert t.method == name and not t.model.training and t.class_names == digits60.class_names
    assert t.config.bits == BITS and t.config.method_options == cfg.method_options
    want, got = state(res.model), state(t.model)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    in_memory = encode((res.model, cfg), digits60, batch_size=BATCH, progress=False)
    np.testing.assert_array_equal(e.codes, in_memory.codes)


def test_method_shards_are_the_rows_of_the_whole_encode(run, digits60):
    """``rows`` [lo, hi) with lo a multiple of the batch: the same batches, so the same codes."""
    name, cfg, res, t, e = run
    parts = [encode(t, digits60, batch_size=BATCH, progress=False, rows=r) for r in ((0, 20), (20, 60))]
    np.testing.assert_array_equal(np.concatenate([p.indices for p in parts]), np.arange(60))
    np.testing.assert_array_equal(np.concatenate([p.codes for p in parts]), e.codes)


def test_method_features_come_from_the_same_pass(run, digits60):
    name, cfg, res, t, e = run
    if not get_method(name).gives_features:
        with pytest.raises(DeephashError, match="no feature vectors"):
            encode(t, digits60, progress=False, features=True)
        return
    f = encode(t, digits60, batch_size=BATCH, progress=False, features=True)
    assert f.features is not None and f.features.shape[0] == 60 and f.features.ndim == 2
    assert np.isfinite(f.features.astype(np.float32)).all()
    np.testing.assert_array_equal(f.codes, e.codes)


@pytest.mark.parametrize("name", list_methods())
def test_method_refuses_bad_settings(name):
    cls = get_method(name)
    with pytest.raises(InvalidInputError, match=f"unknown {name} method option"):
        TrainConfig(method=name, method_options={"no_such_option": 1})
    with pytest.raises(InvalidInputError, match=f"unknown {name} method option"):
        cls.resolve_options({"no_such_option": 1})
    for bad in ({"bits": 0}, {"bits": 4096}, {"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}):
        with pytest.raises(InvalidInputError):
            TrainConfig(method=name, **bad).validate()
    defaults = TrainConfig(method=name)
    assert defaults.method_options == cls.resolve_options({})  # every option has a default
    defaults.validate()


# ---- engines -----------------------------------------------------------------------------------------------

EXHAUSTIVE = {"faiss-ivf": {"nlist": 4, "nprobe": 4}}  # approximate engines, set to probe every list: exact
_collections = count()


@pytest.fixture(scope="module")
def milvus_lite(tmp_path_factory):
    """A Milvus Lite file for the module; its server is stopped after."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from deephash.index.engines import milvus as mv

    yield str(tmp_path_factory.mktemp("milvus") / "conf.db")
    mv.close_clients()


@pytest.fixture
def engine_settings(request):
    """``settings()`` → fresh settings for the engine under test (a new collection for a remote one)."""
    name = request.node.callspec.params["name"]
    if name == "milvus":
        uri = request.getfixturevalue("milvus_lite")
        return lambda: {"uri": uri, "collection": f"conf{next(_collections)}"}
    return lambda: dict(EXHAUSTIVE.get(name, {}))


def new_engine(name, bits, settings):
    return create_engine(name, bits, **settings())


def fill(eng, codes, ids):
    """Give an engine these codes: a snapshot engine builds on them, a mutable one starts empty and adds them."""
    if eng.mutable:
        eng.build(codes[:0], ids[:0])
        if len(ids):
            eng.add(codes, ids)
    else:
        eng.build(codes, ids)


def tied_codes(n, bits, seed, distinct=25):
    """Codes drawn from a few distinct ones, one bit flipped in some: many codes tied at each distance."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2, (distinct, bits), dtype=np.uint8)
    b = pool[rng.integers(0, distinct, n)]
    flip = rng.random(n) < 0.3
    b[flip, rng.integers(0, bits, flip.sum())] ^= 1
    return np.packbits(b, axis=1)


def brute(q, codes):
    """(nq, n) Hamming distances by numpy XOR + popcount, the reference every engine is checked against."""
    return np.unpackbits(q[:, None, :] ^ codes[None, :, :], axis=2).sum(2).astype(np.int64)


def exact(name):
    return engine_class(name).exact is True or name in EXHAUSTIVE


def check_knn(D, I, q, codes, ids, k, ties, is_exact=True):
    n, kk = len(ids), min(k, len(ids))
    assert D.shape == I.shape == (len(q), k) and D.dtype == np.int32 and I.dtype == np.int64
    assert (D[:, kk:] == -1).all() and (I[:, kk:] == -1).all()  # missing slots
    d = brute(q, codes)
    where = {int(i): p for p, i in enumerate(ids)}
    order = np.lexsort((np.broadcast_to(np.arange(n), d.shape), d), axis=1)[:, :kk]  # (distance, position)
    for j in range(len(q)):
        got_d, got_i = D[j, :kk], I[j, :kk]
        found = got_i >= 0
        assert (np.diff(got_d[found]) >= 0).all(), "rows are sorted by distance"
        assert len(set(got_i[found].tolist())) == found.sum(), "an id came back twice"
        assert all(int(i) in where for i in got_i[found]), "an id not in the engine"
        np.testing.assert_array_equal(got_d[found], d[j, [where[int(i)] for i in got_i[found]]])  # true distances
        key = {"found-id": got_i[found]}.get(ties)
        if ties in ("position", "found-position"):
            key = np.array([where[int(i)] for i in got_i[found]], np.int64)
        if key is not None:
            assert (np.lexsort((key, got_d[found])) == np.arange(len(key))).all(), f"ties not ordered as {ties!r} says"
        if not is_exact:
            continue
        assert found.all()
        np.testing.assert_array_equal(got_d, d[j, order[j]])  # the k smallest distances
        if ties == "position":  # which of the codes tied at the k-th distance come back too
            np.testing.assert_array_equal(got_i, ids[order[j]])
        else:
            assert set(ids[d[j] < got_d[-1]].tolist()) <= set(got_i.tolist())  # everything closer than the k-th


def check_range(lims, D, I, q, codes, ids, r, ties, is_exact=True):
    assert lims.dtype == np.int64 and lims.shape == (len(q) + 1,) and lims[0] == 0
    assert D.dtype == np.int32 and I.dtype == np.int64 and lims[-1] == len(D) == len(I)
    d = brute(q, codes)
    where = {int(i): p for p, i in enumerate(ids)}
    for j in range(len(q)):
        got_d, got_i = D[lims[j]:lims[j + 1]], I[lims[j]:lims[j + 1]]
        assert (np.diff(got_d) >= 0).all(), "rows are sorted by distance"
        hit = np.flatnonzero(d[j] <= r)  # inclusive radius
        want = sorted(zip(d[j, hit].tolist(), ids[hit].tolist()))
        got = sorted(zip(got_d.tolist(), got_i.tolist()))
        if is_exact:
            assert got == want
        else:
            assert set(got) <= set(want)
        key = {"found-id": got_i}.get(ties)
        if ties in ("position", "found-position"):  # a radius search returns every tied code: positions decide
            key = np.array([where[int(i)] for i in got_i], np.int64)
        if key is not None:
            assert (np.lexsort((key, got_d)) == np.arange(len(got_d))).all(), f"ties not ordered as {ties!r} says"


@pytest.mark.parametrize("bits", [24, 64, 128])
@pytest.mark.parametrize("name", list_engines())
def test_engine_search_equals_brute_force(name, bits, engine_settings):
    n = 300
    codes = tied_codes(n, bits, seed=bits)
    ids = np.random.default_rng(bits).choice(1 << 40, n, replace=False).astype(np.int64)  # not in insertion order
    q = np.concatenate([codes[:4], tied_codes(6, bits, seed=bits + 1)])
    eng = new_engine(name, bits, engine_settings)
    fill(eng, codes, ids)
    assert len(eng) == n
    ties, is_exact = engine_class(name).ties, exact(name)
    assert ties in ("position", "found-position", "found-id", "engine")
    for k in (1, 10, n, n + 7):
        check_knn(*eng.search(q, k), q, codes, ids, k, ties, is_exact)
    for r in (0, 1, 3, bits):
        check_range(*eng.range_search(q, r), q, codes, ids, r, ties, is_exact)
    assert np.diff(eng.range_search(q, 0)[0]).max() > 1  # the ties were exercised


@pytest.mark.parametrize("name", list_engines())
def test_engine_empty_and_zero_queries(name, engine_settings):
    eng = new_engine(name, 64, engine_settings)
    fill(eng, np.zeros((0, 8), np.uint8), np.zeros(0, np.int64))
    assert len(eng) == 0
    q = tied_codes(3, 64, seed=0)
    D, I = eng.search(q, 5)
    assert D.shape == I.shape == (3, 5) and D.dtype == np.int32 and I.dtype == np.int64
    assert (D == -1).all() and (I == -1).all()
    lims, D, I = eng.range_search(q, 64)
    np.testing.assert_array_equal(lims, np.zeros(4, np.int64))
    assert len(D) == len(I) == 0 and D.dtype == np.int32 and I.dtype == np.int64
    full = new_engine(name, 64, engine_settings)
    fill(full, q, np.array([7, 3, 5], np.int64))
    D, I = full.search(q[:0], 4)
    assert D.shape == I.shape == (0, 4)
    assert full.range_search(q[:0], 3)[0].tolist() == [0]


@pytest.mark.parametrize("name", list_engines())
def test_engine_refuses_bad_input(name, engine_settings):
    with pytest.raises(InvalidInputError, match="unknown setting"):
        create_engine(name, 64, **engine_settings(), no_such_setting=1)
    with pytest.raises(InvalidInputError):
        create_engine(name, 60, **engine_settings())  # not a whole number of bytes
    eng = new_engine(name, 64, engine_settings)
    codes = tied_codes(20, 64, seed=3)
    ids = np.arange(100, 120, dtype=np.int64)
    if not eng.mutable:
        with pytest.raises(InvalidInputError):
            eng.search(codes[:2], 3)  # not built
        with pytest.raises(InvalidInputError):
            eng.build(codes, ids[:5])  # ids and codes of different lengths
    fill(eng, codes, ids)
    q = codes[:2]
    bad_queries = [q.astype(np.float32), q.astype(np.int64), q[:, :7], np.zeros((2, 9), np.uint8), q[0]]
    for bad in bad_queries:
        with pytest.raises(InvalidInputError):
            eng.search(bad, 3)
        with pytest.raises(InvalidInputError):
            eng.range_search(bad, 3)
    for k in (0, -1, 2.5, "3", None):
        with pytest.raises(InvalidInputError):
            eng.search(q, k)
    for r in (-1, 1.5, "2", None):
        with pytest.raises(InvalidInputError):
            eng.range_search(q, r)
    if not eng.mutable:  # one snapshot: the owner builds a new one instead
        with pytest.raises(InvalidInputError):
            eng.add(codes[:1], np.array([999], np.int64))
        with pytest.raises(InvalidInputError):
            eng.remove(ids[:1])
        with pytest.raises(InvalidInputError, match="already built"):
            eng.build(codes, ids)
    assert len(eng) == 20
    check_knn(*eng.search(q, 20), q, codes, ids, 20, engine_class(name).ties, exact(name))  # still intact


@pytest.mark.parametrize("name", list_engines())
def test_engine_behind_an_index_adds_removes_and_keeps_ids(name, engine_settings):
    """HammingIndex with this engine as its default: fresh and given ids, removal, -1 for missing slots; a
    mutable engine gets the add and remove itself, a snapshot one is rebuilt."""
    bits = 64
    codes = tied_codes(160, bits, seed=9)
    index = HammingIndex(bits, engine=name, engine_settings=engine_settings())
    first = index.add(codes[:80])
    np.testing.assert_array_equal(first, np.arange(80))  # fresh ids: consecutive
    given = np.random.default_rng(9).choice(np.arange(1000, 100_000), 80, replace=False).astype(np.int64)
    np.testing.assert_array_equal(index.add(codes[80:], ids=given), given)
    all_ids = np.concatenate([first, given])
    with pytest.raises(InvalidInputError, match="already in the index"):
        index.add(codes[:1], ids=given[:1])
    gone = np.concatenate([first[::3], given[5:40]])
    assert index.remove(gone) == len(gone)
    with pytest.raises(NotFoundError):
        index.remove(gone[:1])
    keep = ~np.isin(all_ids, gone)
    ids, held = all_ids[keep], codes[keep]
    assert len(index) == len(ids)
    np.testing.assert_array_equal(index.ids, ids)
    np.testing.assert_array_equal(index.get_codes(ids[::-7]), held[::-7])
    q = np.concatenate([codes[:3], codes[90:93], tied_codes(4, bits, seed=10)])
    ties, is_exact = engine_class(name).ties, exact(name)
    for k in (5, len(ids), len(ids) + 3):
        check_knn(*index.search(q, k), q, held, ids, k, ties, is_exact)
    for r in (0, 1, 2):
        check_range(*index.range_search(q, r), q, held, ids, r, ties, is_exact)
    index.remove(ids)
    D, I = index.search(q, 4)
    assert len(index) == 0 and (D == -1).all() and (I == -1).all()
    assert index.range_search(q, bits)[0].tolist() == [0] * (len(q) + 1)
