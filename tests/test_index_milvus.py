"""The milvus engine on Milvus Lite (embedded; one server per module, its file in a temp folder): exact
against the in-memory scan, inclusive radius edges, writes, reopening, errors, and the CLI and service
over a Milvus-backed index."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from deephash.cli import app
from deephash.errors import IncompatibleError, InvalidInputError, NotFoundError, UnavailableError
from deephash.index import CategoryIndex, HammingIndex
from deephash.index.engines import milvus as mv
from deephash.retrieval import open_index
from deephash.service import Settings, create_app

runner = CliRunner()


def lite_processes(folder: Path) -> list[int]:
    """Pids of Milvus Lite servers serving a file in ``folder``."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"/milvus") and any(str(folder).encode() in a for a in cmd):
            pids.append(int(pid))
    return pids


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """A Milvus Lite file shared by the module's tests; the server is stopped (and checked gone) after."""
    folder = tmp_path_factory.mktemp("milvus")
    yield str(folder / "codes.db")
    mv.close_clients()
    deadline = time.time() + 10
    while lite_processes(folder) and time.time() < deadline:
        time.sleep(0.1)
    assert lite_processes(folder) == [], "Milvus Lite server left running"


_names = iter(range(1_000_000))


def milvus_index(lite, bits, **settings) -> HammingIndex:
    return HammingIndex(bits, engine="milvus",
                        engine_settings={"uri": lite, "collection": f"t{next(_names)}"} | settings)


def make_codes(kind, n, bits, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    centers = rng.integers(0, 2, (12, bits), dtype=np.uint8)
    flips = rng.random((n, bits)) < 1.5 / bits  # about 1.5 bits from a center: many codes within r <= 3, ties
    return np.packbits(centers[rng.integers(0, 12, n)] ^ flips, axis=1)


def distances(q, codes):
    return np.unpackbits(q[:, None] ^ codes[None], axis=2).sum(2)


def assert_same_as_scan(index, q, radii):
    codes, ids = index.codes, index.ids
    true = distances(q, codes)
    D, I = index.search(q, 10)
    Df, _ = index.search(q, 10, engine="flat")
    np.testing.assert_array_equal(D, Df)  # distance multisets (rows are sorted)
    pos = np.searchsorted(ids, I)  # ids are ascending here
    np.testing.assert_array_equal(np.take_along_axis(true, pos, 1), D)  # each id really is that far
    for r in radii:
        lims, d, i = index.range_search(q, r)
        lf, df, idf = index.range_search(q, r, engine="flat")
        np.testing.assert_array_equal(lims, lf)
        for j in range(len(q)):
            got = sorted(zip(d[lims[j]:lims[j + 1]], i[lims[j]:lims[j + 1]]))
            assert got == sorted(zip(df[lf[j]:lf[j + 1]], idf[lf[j]:lf[j + 1]])), (r, j)
            assert set(i[lims[j]:lims[j + 1]]) == set(ids[true[j] <= r])


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_exact_like_the_scan(lite, kind, bits):
    codes = make_codes(kind, 1000, bits, seed=bits)
    index = milvus_index(lite, bits)
    index.add(codes)
    q = np.concatenate([codes[:10], make_codes(kind, 20, bits, seed=bits + 1)])
    assert_same_as_scan(index, q, [0, 1, 2, 3])
    assert_same_as_scan(index, q[:2], [bits, bits + 5])
    assert (np.diff(index.range_search(q[:2], bits)[0]) == 1000).all()  # r >= bits: everything
    if kind == "clustered":
        assert (np.diff(index.range_search(q, 0)[0]) > 1).any()  # the edges were exercised on equal codes


def test_radius_results_past_the_result_cap_stay_complete(lite, monkeypatch):
    monkeypatch.setattr(mv, "MAX_TOPK", 64)  # Milvus caps at 16,384; a small cap forces the id-range split
    codes = make_codes("clustered", 2000, 32, seed=5)
    index = milvus_index(lite, 32)
    index.add(codes)
    q = codes[:8]
    lims, _, _ = index.range_search(q, 3)
    assert np.diff(lims).max() > 64
    assert_same_as_scan(index, q, [2, 3, 32])
    with pytest.raises(InvalidInputError, match="at most 64"):
        index.search(q, 65)


def test_metadata_fields_round_trip(lite):
    metas = [None, {}, {"path": "a.png", "labels": ["cat", "dog"]},
             {"path": "b.png", "labels": [], "category": "dog", "box": [0.1, 0.2, 0.3, 0.123456789], "prob": 0.9,
              "note": {"x": 1}}]
    index = milvus_index(lite, 16)
    index.add(np.arange(8, dtype=np.uint8).reshape(4, 2), ids=[5, 6, 7, 8], metadata=metas)
    eng = index._engine()
    assert eng.get_metadata([8, 5, 6, 7, 99]) == [metas[3], None, {}, metas[2], None]
    np.testing.assert_array_equal(eng.get_codes([7, 5]), [[4, 5], [0, 1]])
    row = eng.client().query(eng.collection, ids=[8], output_fields=["path", "category", "box"])[0]
    assert row["path"] == "b.png" and row["category"] == "dog" and len(row["box"]) == 4  # scalar fields


def test_remove_and_reopen_after_restart(lite, tmp_path):
    codes = make_codes("clustered", 600, 64, seed=2)
    index = milvus_index(lite, 64)
    index.add(codes, metadata=[{"path": f"{i}.png"} for i in range(600)])
    assert index.remove([0, 3, 599]) == 3
    eng = index._engine()
    assert len(eng) == 597 and eng._row_count() == 597
    D, I = index.search(codes[:4], 5)
    assert not np.isin(I, [0, 3, 599]).any() and D[1, 0] == 0 and I[1, 0] == 1
    index.save(tmp_path / "idx")
    manifest = (tmp_path / "idx" / "manifest.json").read_text()
    assert lite in manifest and eng.collection in manifest

    mv.close_clients()  # the Lite server stops: a restart
    again = HammingIndex.load(tmp_path / "idx")
    assert_same_as_scan(again, codes[:10], [0, 3])
    assert again.search(codes[:4], 5)[1].tolist() == I.tolist()

    # A writer that died after changing Milvus but before saving its folder: reopening restores the folder's state.
    again.remove([1, 2])
    again.add(codes[:1], ids=[1000])
    mv.close_clients()
    third = HammingIndex.load(tmp_path / "idx")
    assert_same_as_scan(third, codes[:10], [0, 2])
    assert third._engine()._row_count() == 597
    assert third._engine().get_metadata([1, 1000]) == [{"path": "1.png"}, None]


def test_errors_are_one_deephash_error(lite, tmp_path):
    index = milvus_index(lite, 16)
    index.add(np.zeros((3, 2), np.uint8))
    index.save(tmp_path / "idx")
    coll = index._engine().collection
    with pytest.raises(IncompatibleError, match="already holds 3 codes"):  # never takes over another index's codes
        milvus_index(lite, 16, collection=coll).add(np.zeros((1, 2), np.uint8))
    with pytest.raises(IncompatibleError, match="holds 16-bit codes"):
        milvus_index(lite, 32, collection=coll).add(np.zeros((1, 4), np.uint8))
    assert mv.drop_collection(lite, coll)
    with pytest.raises(NotFoundError, match=f"collection '{coll}' .* does not exist"):
        HammingIndex.load(tmp_path / "idx").search(np.zeros(2, np.uint8), 1)
    with pytest.raises(UnavailableError, match="cannot reach Milvus at http://127.0.0.1:9"):
        milvus_index("http://127.0.0.1:9", 16, timeout=1).add(np.zeros((1, 2), np.uint8))
    with pytest.raises(InvalidInputError, match="must not hold credentials"):
        milvus_index("http://root:secret@milvus:19530", 16)
    with pytest.raises(InvalidInputError, match="needs a uri"):
        HammingIndex(16, engine="milvus", engine_settings={"collection": "x"})
    with pytest.raises(IncompatibleError, match="BIN_IVF_FLAT"):  # Milvus Lite runs BIN_FLAT only
        milvus_index(lite, 16, index_type="BIN_IVF_FLAT").add(np.zeros((1, 2), np.uint8))
    r = runner.invoke(app, ["index", "build", "--engine", "milvus", "--uri", str(tmp_path / "no" / "c.db"),
                            "--codes", str(write_codes(tmp_path)), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "Traceback" not in r.output
    assert "its folder does not exist" in r.output
    codes = str(tmp_path / "codes.npz")
    for args, words in ((["--engine", "milvus"], "needs --uri"), (["--uri", lite], "go with --engine milvus")):
        r = runner.invoke(app, ["index", "build", "--codes", codes, "--out", str(tmp_path / "y"), *args])
        assert r.exit_code == 2 and words in r.output, r.output


def write_codes(tmp_path):
    from deephash.codes import CodesFile

    cf = CodesFile(codes=make_codes("clustered", 40, 16), bits=16, ids=np.arange(40),
                   paths=[f"{i}.png" for i in range(40)], labels=np.eye(2, dtype=np.uint8)[np.arange(40) % 2],
                   class_names=["a", "b"])
    return cf.save(tmp_path / "codes.npz")


def search_json(index_dir, *args):
    r = runner.invoke(app, ["search", "--index", str(index_dir), "--json", *args])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]


def test_cli_and_service_answer_like_the_in_memory_index(lite, served_indexes, tmp_path, monkeypatch):
    """``index build --engine milvus`` over the trained digits model, then ``search`` and ``/v1/search``."""
    monkeypatch.setenv("MILVUS_USER", "me")  # credentials come from the environment, never from the folder
    monkeypatch.setenv("MILVUS_PASSWORD", "pw-never-stored")
    dsh, digits = served_indexes["dsh"], served_indexes["digits"]
    ckpt = dsh.parent / "dsh" / "last.ckpt"
    out = tmp_path / "digits-milvus"
    r = runner.invoke(app, ["index", "build", "--checkpoint", str(ckpt), "--data", str(digits), "--split", "database",
                            "--engine", "milvus", "--uri", lite, "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "pw-never-stored" not in (out / "manifest.json").read_text()
    opened = open_index(out)
    assert opened.semantic.engine == "milvus" and opened.semantic.settings_of()["collection"] == "digits_milvus"
    memory = open_index(dsh)
    query = Path(memory.get_metadata([int(memory.ids[7])])[0]["path"])
    for args in (["--image", str(query), "-k", "54"], ["--image", str(query), "-k", "5"],
                 ["--image", str(query), "--radius", "3"]):
        assert search_json(out, *args) == search_json(dsh, *args)
    with TestClient(create_app(Settings(str(out)))) as c, TestClient(create_app(Settings(str(dsh)))) as m:
        for body in ({"id": int(memory.ids[3]), "k": 54}, {"id": 5, "radius": 2},
                     {"code": memory.codes[9].tobytes().hex(), "k": 5}):
            got, want = c.post("/v1/search", json=body), m.post("/v1/search", json=body)
            assert got.status_code == want.status_code == 200 and got.json() == want.json()


def test_category_index_on_milvus(lite):
    """IAH category codes: one collection per category, category and box as fields."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (30, 3, 4), dtype=np.uint8)
    present = rng.random((30, 3)) < 0.6
    boxes = rng.random((30, 3, 4))
    on_milvus = CategoryIndex(32, ["a", "b", "c"], "milvus", {"uri": lite, "collection": "cats"})
    memory = CategoryIndex(32, ["a", "b", "c"], "flat")
    for idx in (on_milvus, memory):
        idx.add(np.arange(30), codes, present, boxes=boxes, metadata=[{"path": f"{i}.png"} for i in range(30)])
    q, cats = codes[:6, 0], np.array([0, 1, 2, 0, 1, 2])
    D, I, meta = on_milvus.search(q, cats, 30)
    Dm, Im, metam = memory.search(q, cats, 30)
    np.testing.assert_array_equal(D, Dm)
    np.testing.assert_array_equal(I, Im)  # full rankings: ties by id = insertion order here
    assert meta == metam
    eng = on_milvus.subs[1]._engine()
    assert eng.collection == "cats_c0001"
    first = int(np.flatnonzero(present[:, 1])[0])
    assert eng.get_metadata([first])[0]["category"] == "b"
    assert eng.get_metadata([first])[0]["box"] == [round(float(v), 5) for v in boxes[first, 1]]
