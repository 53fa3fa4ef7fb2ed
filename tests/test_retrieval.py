"""The retrieval layer: one ImageIndex call searches DSH and IAH indexes, by images, codes or ids."""

import numpy as np
import pytest
from PIL import Image
from test_iah_e2e import _yolo_squares
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import hamming_distances
from deephash.errors import DeephashError
from deephash.retrieval import Encoder, ImageIndex, open_index

runner = CliRunner()


@pytest.fixture(scope="module")
def dsh_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dsh")
    r = runner.invoke(app, ["train", "--data", "digits", "--bits", "16", "--epochs", "2", "--batch-size", "100",
                            "--optimizer", "adam", "--schedule", "cosine", "--out", str(d / "run"), "-q"])
    assert r.exit_code == 0, r.output
    return d / "run" / "last.ckpt"


@pytest.fixture(scope="module")
def iah_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("iah")
    data = _yolo_squares(d / "sq", 24, 0)
    r = runner.invoke(app, ["iah-train", "--data", str(data), "--bits", "32", "--image-size", "48", "--epochs", "4",
                            "--batch-size", "12", "--top-n", "12", "--out", str(d / "run"), "-q"])
    assert r.exit_code == 0, r.output
    return d / "run" / "last.ckpt", data


def _brute(q, codes, ids, k):
    d = hamming_distances(q, codes)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def test_dsh_index_searches_by_images_codes_and_ids(dsh_run, tmp_path):
    enc = Encoder(dsh_run)
    db = enc.dataset(split="database")
    index = ImageIndex.build(dsh_run, db)
    assert len(index) == len(db) and index.method == "dsh" and index.bits == 16
    stored = index.get_codes(np.arange(len(db)))
    queries = enc.dataset(split="query")
    pixels = [queries.image_u8(i) for i in range(6)]
    by_image = index.search(images=pixels, k=7)
    qcodes = enc.encode_images(pixels).codes
    D, I = _brute(qcodes, stored, np.arange(len(db)), 7)
    for n, qr in enumerate(by_image):
        assert [r.distance for r in qr.results] == D[n].tolist()
        assert [r.id for r in qr.results] == I[n].tolist()       # ties by insertion order, as the brute force
        assert qr.results[0].labels == [db.class_names[c] for c in np.flatnonzero(db.labels[I[n, 0]])]
    by_codes = index.search(codes=qcodes, k=7)
    assert [[r.id for r in q.results] for q in by_codes] == I.tolist()
    by_id = index.search(ids=[5], radius=1)[0]
    assert by_id.results[0].id == 5 and by_id.results[0].distance == 0
    assert all(r.distance <= 1 for r in by_id.results)
    assert len(by_id.results) == int((hamming_distances(stored[5:6], stored)[0] <= 1).sum())

    index.save(tmp_path / "idx")
    again = open_index(tmp_path / "idx")
    assert [r.id for r in again.search(images=pixels[:2], k=7)[0].results] == I[0].tolist()
    png = tmp_path / "q.png"
    Image.fromarray(pixels[0]).save(png)
    (tmp_path / "bad.jpg").write_text("not an image")
    added = again.add([png, tmp_path / "bad.jpg"], metadata=[{"note": "mine"}, None])
    assert len(added.ids) == 1 and len(added.failures) == 1 and "bad.jpg" in added.failures[0][0]
    mine = [r for r in again.search(images=[png], radius=0)[0].results if r.id == added.ids[0]]
    assert len(mine) == 1 and mine[0].path == str(png) and mine[0].metadata == {"note": "mine"}
    assert again.remove(added.ids) == 1 and len(again) == len(db)
    again.save()
    assert len(open_index(tmp_path / "idx")) == len(db)


def test_iah_index_answers_the_same_calls(iah_run, tmp_path):
    ckpt, data = iah_run
    enc = Encoder(ckpt)
    index = ImageIndex.build(ckpt, enc.dataset(str(data), "train"))
    assert index.method == "iah" and len(index) == 24 and len(index.category) >= 24
    index.save(tmp_path / "idx")
    index = open_index(tmp_path / "idx")
    query = data / "images" / "val" / "0.png"
    sem = index.search(images=[query], k=5)[0]                     # the same call as for DSH
    assert len(sem.results) == 5 and sem.results[0].category is None
    cat = index.search(images=[query], k=3, mode="category", threshold=0.3)[0]
    assert cat.mode == "category" and cat.categories
    for c, found in cat.groups():
        assert len(found) == 3 and all(r.category == c.name and len(r.box) == 4 for r in found)
    by_id = index.search(ids=[0], k=3, mode="category")[0]
    assert by_id.results[0].id == 0 and by_id.results[0].distance == 0  # its own category code comes first
    n = len(index.category)
    index.remove([0])
    assert len(index) == 23 and len(index.category) < n
    assert all(r.id != 0 for r in index.search(images=[query], k=30, mode="category")[0].results)


def test_bad_queries_name_the_problem(dsh_run):
    index = ImageIndex.build(dsh_run, Encoder(dsh_run).dataset(split="query"))
    cases = [
        (dict(k=3), "exactly one kind of query"),
        (dict(ids=[0], codes=np.zeros((1, 2), np.uint8)), "exactly one kind of query"),
        (dict(ids=[0], mode="both"), "mode must be semantic or category"),
        (dict(ids=[0], k=0), "k must be a positive integer"),
        (dict(ids=[0], radius=-1), "radius must be a non-negative integer"),
        (dict(ids=[10_000]), "not in the index"),
        (dict(ids=[0], mode="category"), "needs an IAH index"),
        (dict(codes=np.zeros((1, 3), np.uint8)), "do not match this 16-bit index"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(DeephashError, match=msg):
            index.search(**kwargs)


def test_image_index_answers_what_callers_read_of_it():
    """Items, codes, ids, code size and one check of search arguments are public: no caller needs ``.semantic``."""
    from deephash.codes import CodesFile

    codes = np.random.default_rng(0).integers(0, 256, (6, 2), dtype=np.uint8)
    codes[:, 1] &= 0xF0  # 12-bit codes: the last 4 bits are padding
    index = ImageIndex.from_codes(CodesFile(codes=codes, bits=12, ids=np.arange(10, 16),
                                            paths=[f"img{i}.png" for i in range(6)]))
    assert index.ids.tolist() == list(range(10, 16)) and (index.codes == codes).all()
    assert index.nbytes == 2 and index.bits == 12 and index.feature_dim is None and index.model_name is None
    assert (index.get_codes([12, 10]) == codes[[2, 0]]).all()
    assert index.get_metadata([11])[0]["path"] == "img1.png"
    item = index.item(13)
    assert item["id"] == 13 and item["path"] == "img3.png" and (item["code"] == codes[3]).all()
    with pytest.raises(DeephashError, match="not in the index"):
        index.item(99)
    # the one check of search arguments: search() runs it, and a server adds its own limits
    index.check_search("ids", k=5)
    for args, kw, msg in [(("ids",), dict(k=0), "k must be a positive integer"),
                          (("ids",), dict(k=50, max_k=20), "k must be 1 to 20"),
                          (("codes",), dict(rerank=500, max_rerank=100), "rerank must be 1 to 100"),
                          (("ids",), dict(rerank=2), "keeps no feature vectors"),
                          (("codes",), dict(mode="category"), "needs an IAH index"),
                          (("ids",), dict(radius=-1), "radius must be a non-negative integer"),
                          (("pixels",), {}, "query must be one of")]:
        with pytest.raises(DeephashError, match=msg):
            index.check_search(*args, **kw)


def test_iah_codes_files_are_scored_by_evaluate(iah_run, tmp_path):
    import json

    from deephash.codes import CodesFile

    ckpt, data = iah_run
    for split in ("train", "val"):
        r = runner.invoke(app, ["encode", str(ckpt), "--data", str(data), "--split", split,
                                "--out", str(tmp_path / f"{split}.npz"), "-q"])
        assert r.exit_code == 0, r.output
    db = CodesFile.load(tmp_path / "train.npz")
    assert db.has_categories and db.category_codes.shape == (24, 3, 4) and db.probs.shape == (24, 3)
    assert db.labels.sum() > 0 and db.meta["method"] == "iah"
    r = runner.invoke(app, ["evaluate", "--query", str(tmp_path / "val.npz"), "--database", str(tmp_path / "train.npz"),
                            "--json", "--topk", "10"])
    assert r.exit_code == 0, r.output
    scores = json.loads(r.output)
    assert set(scores) == {"semantic", "category"}
    assert 0 < scores["category"]["metrics"]["mAP"]["deterministic"] <= 1


def test_index_cli_builds_from_a_model_and_adds_images(dsh_run, tmp_path):
    import json

    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", "--checkpoint", str(dsh_run), "--split", "query", "--out", str(idx), "-q"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("indexed 180 codes of 16 bits")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    r = runner.invoke(app, ["index", "add", "--index", str(idx), "--images", str(photos)])
    assert r.exit_code == 0, r.output
    assert "broken.jpg" in r.output and "added 3 codes; index holds 183" in r.output
    r = runner.invoke(app, ["search", "--index", str(idx), "--image", str(photos / "1.png"), "--radius", "0", "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.output.splitlines()[0])["results"]
    assert str(photos / "1.png") in [f.get("path") for f in found]
    info = json.loads(runner.invoke(app, ["index", "info", "--index", str(idx)]).output)
    assert info["count"] == 183 and info["method"] == "dsh"


def test_iah_index_keeps_its_threshold_and_survives_an_emptied_category(iah_run, tmp_path):
    ckpt, data = iah_run
    index = ImageIndex.build(ckpt, Encoder(ckpt).dataset(str(data), "train"), threshold=0.2)
    index.save(tmp_path / "idx")
    again = open_index(tmp_path / "idx")
    assert again.threshold == 0.2
    cat = max(again.category.subs, key=lambda c: len(again.category.subs[c]))
    holders = again.category.subs[cat].ids.tolist()
    again.remove(holders)  # the category is now empty
    assert cat not in again.category.subs
    query = data / "images" / "val" / "0.png"
    for qr in again.search(images=[query], k=3, mode="category", threshold=0.0, max_categories=3):
        assert not set(r.id for r in qr.results) & set(holders)
    again.save()
    assert open_index(tmp_path / "idx").search(ids=[next(i for i in range(24) if i not in holders)], k=2,
                                               mode="category")[0].results


def test_category_search_while_a_writer_adds_and_removes(iah_run, tmp_path):
    import sys
    import threading

    ckpt, data = iah_run
    index = ImageIndex.build(ckpt, Encoder(ckpt).dataset(str(data), "train"))
    query = data / "images" / "val" / "1.png"
    images = sorted((data / "images" / "val").glob("*.png"))[:6]
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                for qr in index.search(images=[query], k=5, mode="category", threshold=0.0):
                    for cat, found in qr.groups():
                        assert all(r.category == cat.name for r in found)
                        assert [r.distance for r in found] == sorted(r.distance for r in found)
                        assert len({r.id for r in found}) == len(found)  # no id twice in a ranked list
            except Exception as e:  # noqa: BLE001 - any failure of a reader is the test's finding
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that short races show
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            added = index.add(images)
            index.remove(added.ids)
            index.remove([int(index.ids[0])])
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(switch)
    assert not errors, errors[:3]
    assert len(index) == 24 - 6


def test_category_ties_tolerate_an_image_being_removed(iah_run):
    """Between a writer's removal from the category codes and from the semantic index, a reader can find an
    image in a category but not in the semantic index: it must rank last among its ties, not fail."""
    ckpt, data = iah_run
    index = ImageIndex.build(ckpt, Encoder(ckpt).dataset(str(data), "train"))
    query = data / "images" / "val" / "2.png"
    before = index.search(images=[query], k=24, mode="category", threshold=0.0, max_categories=1)[0]
    top = before.results[0]
    index.semantic.remove([top.id])  # the state half-way through ImageIndex.remove
    after = index.search(images=[query], k=24, mode="category", threshold=0.0, max_categories=1)[0]
    tied = [r.id for r in after.results if r.distance == top.distance]
    assert tied[-1] == top.id


def test_search_result_dict_holds_every_set_field_and_the_metadata():
    """The service answers with ``to_dict``: a field added to SearchResult must not be silently dropped."""
    from dataclasses import fields

    from deephash.retrieval import SearchResult

    r = SearchResult(3, 1, metadata={"name": "a.jpg"})
    for f in fields(SearchResult):
        if f.name not in ("id", "distance", "metadata"):
            setattr(r, f.name, [0.5, 0.5, 1.0, 1.0] if f.name in ("box", "labels") else 0.25)
    d = r.to_dict()
    assert d["name"] == "a.jpg" and d["id"] == 3 and d["distance"] == 1
    assert set(d) == {f.name for f in fields(SearchResult)} - {"metadata"} | {"name"}
    assert SearchResult(4, 0).to_dict() == {"id": 4, "distance": 0, "labels": []}
