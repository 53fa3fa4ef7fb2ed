"""Persistence: round trips, refusal of corrupt or truncated indexes, crash safety of save."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deephash.errors import DeephashError
from deephash.index import HammingIndex

SRC = str(Path(__file__).resolve().parents[1] / "src")
HELPERS = str(Path(__file__).resolve().parent / "reliability")  # save_pause.py
PAUSE_ENV = "DEEPHASH_TEST_SAVE_PAUSE"  # read by save_pause


def small_index(n=200, bits=64, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    index = HammingIndex(bits, engine="mih")
    meta = [{"path": f"img{i}.jpg", "labels": [i % 3], "score": i / 2} if i % 5 else None for i in range(n)]
    index.add(codes, ids=np.arange(1000, 1000 + n), metadata=meta)
    index.checkpoint = {"path": "model.pt", "sha256": "ab" * 32}
    return index, codes


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path, mmap):
    index, codes = small_index()
    index.save(tmp_path / "idx")
    loaded = HammingIndex.load(tmp_path / "idx", mmap=mmap)
    assert len(loaded) == 200 and loaded.bits == 64 and loaded.engine == "mih"
    assert loaded.checkpoint == index.checkpoint
    np.testing.assert_array_equal(loaded.codes, codes)
    q = codes[:7]
    for a, b in zip(index.search(q, 12), loaded.search(q, 12)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(index.range_search(q, 20), loaded.range_search(q, 20)):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_metadata([1001, 1005, 5]) == [
        {"path": "img1.jpg", "labels": [1], "score": 0.5}, None, None]
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["format"] == "deephash-index/1" and manifest["count"] == 200 and manifest["bits"] == 64
    assert set(manifest["files"]) == {"codes", "ids", "metadata", "table.perm", "table.pcodes"}  # MIH tables
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert np.load(tmp_path / "idx" / manifest["files"]["codes"]["name"], mmap_mode="r").shape == (200, 8)


def test_remove_and_add_are_durable_and_old_files_are_collected(tmp_path):
    index, codes = small_index()
    path = index.save(tmp_path / "idx")
    index = HammingIndex.load(path)
    index.remove([1000, 1001, 1199])
    new = index.add(codes[:3], metadata=[{"path": "new.jpg"}, None, None])
    assert new.tolist() == [1200, 1201, 1202]
    index.save(path)
    again = HammingIndex.load(path)
    assert len(again) == 200
    assert not np.isin([1000, 1001, 1199], again.ids).any()
    assert again.get_metadata([1000, 1200, 1002]) == [None, {"path": "new.jpg"}, {"path": "img2.jpg", "labels": [2], "score": 1.0}]
    D, I = again.search(codes[:1], 1)
    assert I[0, 0] == 1200  # codes[0] removed as id 1000, re-added as 1200
    # The current and the previous version's files are kept (readers of the previous manifest), older ones go.
    assert len(list(path.glob("codes.*.npy"))) == 2 and len(list(path.glob("meta.*.sqlite"))) == 2
    assert again.add(codes[:1]).tolist() == [1203]  # next_id persisted
    again.save(path)
    names = {f["name"] for f in json.loads((path / "manifest.json").read_text())["files"].values()}
    assert len(list(path.glob("codes.*.npy"))) == 2 and names <= {p.name for p in path.iterdir()}


def _data_file(path, key):
    manifest = json.loads((path / "manifest.json").read_text())
    return path / manifest["files"][key]["name"]


@pytest.mark.parametrize("key", ["codes", "ids", "metadata"])
def test_corrupted_byte_is_refused(tmp_path, key):
    index, _ = small_index()
    path = index.save(tmp_path / "idx")
    f = _data_file(path, key)
    data = bytearray(f.read_bytes())
    data[len(data) - 3] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.raises(DeephashError, match="checksum"):
        HammingIndex.load(path)


@pytest.mark.parametrize("key", ["codes", "ids", "metadata"])
def test_truncated_file_is_refused(tmp_path, key):
    index, _ = small_index()
    path = index.save(tmp_path / "idx")
    f = _data_file(path, key)
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DeephashError, match="bytes"):
        HammingIndex.load(path, verify=False)
    with pytest.raises(DeephashError):
        HammingIndex.load(path)


def test_missing_or_bad_manifest_is_refused(tmp_path):
    with pytest.raises(DeephashError, match="no deephash index"):
        HammingIndex.load(tmp_path)
    index, _ = small_index()
    path = index.save(tmp_path / "idx")
    (path / "manifest.json").write_text('{"format": "deephash-index/1", "bits": 64')
    with pytest.raises(DeephashError, match="corrupt"):
        HammingIndex.load(path)
    (path / "manifest.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(DeephashError, match="unknown index format"):
        HammingIndex.load(path)


def test_save_refuses_to_clobber_foreign_paths(tmp_path):
    index, _ = small_index(n=5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeephashError, match="not a directory"):
        index.save(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    with pytest.raises(DeephashError, match="not empty"):
        index.save(tmp_path / "dir")


SAVER = """
import sys, numpy as np
sys.path[:0] = [{src!r}, {helpers!r}]
import save_pause
from deephash.index import HammingIndex
index = HammingIndex.load({path!r}, mmap=False)
index.remove([1000, 1001])
index.add(np.zeros((5, 8), np.uint8))
index.save({path!r})
"""


def test_sigkill_during_save_leaves_previous_index_loadable(tmp_path):
    index, codes = small_index()
    path = index.save(tmp_path / "idx")
    env = dict(os.environ, **{PAUSE_ENV: "30"})
    proc = subprocess.Popen([sys.executable, "-c", SAVER.format(src=SRC, helpers=HELPERS, path=str(path))], env=env)
    try:
        deadline = time.time() + 60
        # Wait until the new version's data files are fully written (the save is paused just before the manifest swap).
        while len(list(path.glob("meta.*.sqlite"))) < 2:
            assert proc.poll() is None, "saver exited early"
            assert time.time() < deadline, "saver never reached the pause"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    old = HammingIndex.load(path)
    assert len(old) == 200 and 1000 in old.ids
    np.testing.assert_array_equal(old.codes, codes)
    # The next save collects the orphaned files of the killed one (it keeps the new and the previous version).
    old.save(path)
    assert len(list(path.glob("codes.*.npy"))) == 2
    assert len(HammingIndex.load(path)) == 200


def test_metadata_of_many_ids_in_one_call_keeps_order_repeats_and_pending_changes(tmp_path):
    """A search asks for the metadata of every result at once: the saved file is read in chunks of ids, and
    the answer must still follow the order asked, repeat repeated ids and prefer unsaved changes."""
    index, _ = small_index(n=1200)
    index = HammingIndex.load(index.save(tmp_path / "idx"))
    index.remove([1001])
    index.add(np.zeros((1, 8), np.uint8), metadata=[{"path": "fresh.jpg"}])  # id 2200, unsaved
    ask = [2199, 1001, 1002, 2200, 1002, 5, 1000] + list(range(1000, 2200, 2))
    got = index.get_metadata(ask)
    expect = {i: ({"path": f"img{i - 1000}.jpg", "labels": [(i - 1000) % 3], "score": (i - 1000) / 2}
                  if (i - 1000) % 5 else None) for i in range(1000, 2200)}
    expect.update({1001: None, 2200: {"path": "fresh.jpg"}, 5: None})
    assert got == [expect[i] for i in ask]


def _no_build(monkeypatch):
    from deephash.index.engines.mih import MIHEngine

    def refuse(self, codes, words):
        raise AssertionError("MIH tables were built instead of restored")
    monkeypatch.setattr(MIHEngine, "_build", refuse)


@pytest.mark.parametrize("mmap", [True, False])
def test_mih_tables_are_stored_and_restored_instead_of_rebuilt(tmp_path, monkeypatch, mmap):
    index, codes = small_index(n=3000, bits=48)
    q = np.concatenate([codes[:5], codes[:5] ^ np.uint8(3)])
    want = [index.search(q, 9), index.range_search(q, 3), index.range_search(q, 1)]  # r >= m and r < m kernels
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["tables"] == {"engine": "mih", "params": {"m": index._engine(None).m}}
    _no_build(monkeypatch)
    loaded = HammingIndex.load(tmp_path / "idx", mmap=mmap)
    assert "mih" in loaded._snap.engines  # ready before the first search
    got = [loaded.search(q, 9), loaded.range_search(q, 3), loaded.range_search(q, 1)]
    for a, b in zip(want, got):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    # Each save writes the tables of its own codes; two versions are kept, older table files collected.
    for _ in range(2):
        loaded = HammingIndex.load(tmp_path / "idx")
        loaded.add(codes[:1])
        monkeypatch.undo()
        loaded.save(tmp_path / "idx")
    assert len(list((tmp_path / "idx").glob("table-mih-perm.*.npy"))) == 2
    assert len(HammingIndex.load(tmp_path / "idx").search(codes[:1], 3)[1][0]) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "out of range"])
def test_a_damaged_table_file_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    index, codes = small_index(n=3000, bits=48)
    path = index.save(tmp_path / "idx")
    want = index.range_search(codes[:6], 4)
    f = _data_file(path, "table.perm")
    if damage == "flip":
        data = bytearray(f.read_bytes())
        data[-5] ^= 0x40
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-8])
    elif damage == "delete":
        f.unlink()
    else:  # passes a load that skips checksums (verify=False) but would send the kernels out of bounds
        perm = np.load(f)
        perm[0, 0] = 10**9
        np.save(f, perm)
    with caplog.at_level("WARNING", logger="deephash.index"):
        loaded = HammingIndex.load(path, verify=damage != "out of range")
    assert "built again" in caplog.text and str(path) in caplog.text
    assert "mih" not in loaded._snap.engines
    for a, b in zip(want, loaded.range_search(codes[:6], 4)):
        np.testing.assert_array_equal(a, b)


def test_tables_are_stored_only_for_the_engine_a_search_uses(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    for engine, kw, stored in [("auto", {}, False), ("flat", {}, False), ("mih", {}, True),
                               ("mih", {"tables": False}, False)]:
        index = HammingIndex(64, engine=engine)
        index.add(codes)
        path = index.save(tmp_path / f"{engine}{len(kw)}", **kw)  # auto below SMALL_N codes: the scan
        files = json.loads((path / "manifest.json").read_text())["files"]
        assert ("table.perm" in files) is stored and bool(list(path.glob("table-*"))) is stored
