"""The engine interface and registry: settings validated and persisted, and a mutable engine (the shape of a
remote collection) kept up to date by add/remove instead of rebuilt. Every registered engine's search against
a brute force, empty engines and bad input: tests/test_conformance.py."""

import json

import numpy as np
import pytest

from deephash.codes import hamming_distances
from deephash.errors import DeephashError
from deephash.index import HammingIndex, IndexEngine, create_engine, list_engines, register_engine
from deephash.index.engines import base as engine_base


def brute(q, codes, ids, k):
    d = hamming_distances(q, codes)
    order = np.lexsort((np.broadcast_to(np.arange(len(ids)), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def test_registry_lists_the_builtins_and_refuses_duplicates_and_non_engines():
    assert list_engines()[:4] == ("flat", "mih", "faiss-flat", "faiss-ivf")
    for name in ("flat", "auto"):
        with pytest.raises(DeephashError, match="already registered"):
            register_engine(name)(type("E", (IndexEngine,), {}))
    with pytest.raises(DeephashError, match="must subclass IndexEngine"):
        register_engine("not-an-engine")(dict)
    with pytest.raises(DeephashError, match="unknown engine 'hnsw'"):
        create_engine("hnsw", 64)


@pytest.mark.parametrize("name, settings, msg", [
    ("flat", {"m": 4}, "unknown setting.*m for engine 'flat'; it takes none"),
    ("mih", {"nprobe": 4}, "unknown setting.*nprobe for engine 'mih'; it takes m"),
    ("mih", {"m": 2}, "mih setting m must be between 3 and 64"),
    ("mih", {"m": 4.0}, "mih setting m"),
    ("faiss-ivf", {"nlist": 0}, "faiss-ivf setting nlist must be a positive integer"),
    ("faiss-ivf", {"nprobe": True}, "nprobe must be a positive integer"),
])
def test_engine_settings_are_validated_when_the_engine_is_created(name, settings, msg):
    with pytest.raises(DeephashError, match=msg):
        create_engine(name, 64, **settings)
    with pytest.raises(DeephashError, match=msg):
        HammingIndex(64, engine=name, engine_settings=settings)


def test_engine_settings_and_engine_options_configure_the_same_engines(tmp_path):
    a = HammingIndex(64, engine="mih", engine_settings={"m": 4})
    b = HammingIndex(64, engine="mih", engine_options={"mih": {"m": 4}})
    assert a.settings_of() == b.settings_of() == b.settings_of("mih") == {"m": 4}
    auto = HammingIndex(64, engine_settings={"m": 5}, engine_options={"faiss-ivf": {"nprobe": 3}})  # auto's: MIH's
    assert auto.settings_of() == {"m": 5} and auto.settings_of("faiss-ivf") == {"nlist": None, "nprobe": 3}
    assert HammingIndex(64, engine_options={"auto": {"m": 5}}).settings_of("mih") == {"m": 5}
    assert HammingIndex(64).settings_of("faiss-ivf") == {"nlist": None, "nprobe": 16}
    with pytest.raises(DeephashError, match="given twice"):
        HammingIndex(64, engine="mih", engine_options={"mih": {"m": 4}}, engine_settings={"m": 5})
    with pytest.raises(DeephashError, match="unknown engine"):
        HammingIndex(64, engine_options={"no-such-engine": {}})
    with pytest.raises(DeephashError, match="must be a dict"):
        HammingIndex(64, engine_options={"mih": 4})
    auto.add(np.random.default_rng(0).integers(0, 256, (300, 8), dtype=np.uint8))
    assert auto._engine("mih").m == 5
    auto.save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["engine"] == {"default": "auto", "settings": {"mih": {"m": 5},
                                                                  "faiss-ivf": {"nlist": None, "nprobe": 3}}}
    loaded = HammingIndex.load(tmp_path / "i")
    assert loaded.settings_of("mih") == {"m": 5} and loaded.settings_of("faiss-ivf")["nprobe"] == 3
    assert loaded.info()["engine_settings"] == manifest["engine"]["settings"]


def test_manifests_with_the_older_engine_keys_still_load(tmp_path):
    index = HammingIndex(64, engine="faiss-ivf")
    index.add(np.zeros((3, 8), np.uint8))
    index.save(tmp_path / "i")
    path = tmp_path / "i" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["engine"] = {"default": "faiss-ivf", "mih_m": 6, "ivf_nlist": 2, "ivf_nprobe": 7}  # as written before
    path.write_text(json.dumps(manifest))
    loaded = HammingIndex.load(tmp_path / "i")
    assert (loaded.engine, loaded.settings_of("mih"), loaded.settings_of()) == ("faiss-ivf", {"m": 6},
                                                                              {"nlist": 2, "nprobe": 7})
    info = loaded.info()
    assert (info["mih_m"], info["ivf_nlist"], info["ivf_nprobe"]) == (6, 2, 7)


class MemoryCollection(IndexEngine):
    """A stand-in for a remote collection: stores ids and codes itself, takes add/remove."""

    exact, mutable = True, True
    defaults = {"uri": None, "collection": "codes"}
    builds = 0

    def build(self, codes, ids):
        type(self).builds += 1
        self.rows = dict(zip(ids.tolist(), codes))

    def add(self, codes, ids):
        self.rows.update(zip(ids.tolist(), codes))

    def remove(self, ids):
        for i in ids.tolist():
            del self.rows[i]

    def _arrays(self):
        return np.array(list(self.rows.values()), np.uint8).reshape(-1, self.nbytes), np.array(list(self.rows), np.int64)

    def search(self, q, k, *, threads=1):
        codes, ids = self._arrays()
        D, I = brute(q, codes, ids, k)
        return D.astype(np.int32), I

    def range_search(self, q, r, *, threads=1):
        codes, ids = self._arrays()
        d = hamming_distances(q, codes)
        hits = [np.flatnonzero(row <= r) for row in d]
        lims = np.concatenate([[0], np.cumsum([len(h) for h in hits])]).astype(np.int64)
        return lims, np.concatenate([row[h] for row, h in zip(d, hits)]).astype(np.int32), ids[np.concatenate(hits)]

    def __len__(self):
        return len(self.rows)


@pytest.fixture
def memory_engine():
    cls = register_engine("test-memory")(MemoryCollection)
    cls.builds = 0
    yield cls
    del engine_base._REGISTRY["test-memory"]


def test_a_mutable_engine_is_kept_up_to_date_instead_of_rebuilt(memory_engine, tmp_path):
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    index = HammingIndex(64, engine="test-memory", engine_settings={"uri": "mem://x"})
    index.add(codes[:30])
    q = codes[[1, 35, 45]]
    D, I = index.search(q, 4)
    np.testing.assert_array_equal(I, brute(q, codes[:30], np.arange(30), 4)[1])
    index.add(codes[30:])
    index.remove([1, 2])
    ids = np.setdiff1d(np.arange(50), [1, 2])
    np.testing.assert_array_equal(index.search(q, 4)[1], brute(q, codes[ids], ids, 4)[1])
    assert memory_engine.builds == 1 and len(index._engine()) == 48  # add and remove were forwarded
    np.testing.assert_array_equal(index.search(q, 4, engine="flat")[1], brute(q, codes[ids], ids, 4)[1])
    index.save(tmp_path / "i")
    loaded = HammingIndex.load(tmp_path / "i")
    assert loaded.engine == "test-memory" and loaded.settings_of() == {"uri": "mem://x", "collection": "codes"}
    with pytest.raises(DeephashError, match="unknown setting.*bogus for engine 'test-memory'"):
        HammingIndex(64, engine="test-memory", engine_settings={"bogus": 1})
