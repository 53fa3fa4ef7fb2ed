"""Category-aware index semantics and a tiny IAH train → encode → search run through the CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import pack_bits
from deephash.errors import DeephashError
from deephash.index import CategoryIndex

COLOURS = [(230, 30, 30), (30, 200, 40), (40, 60, 230)]


def test_category_index_returns_only_images_of_the_category(tmp_path):
    rng = np.random.default_rng(0)
    n, c, bits = 60, 3, 32
    codes = pack_bits(rng.integers(0, 2, (n * c, bits))).reshape(n, c, bits // 8)
    present = rng.random((n, c)) < 0.4
    present[0] = [True, False, False]
    boxes = rng.random((n, c, 4))
    idx = CategoryIndex(bits, ["r", "g", "b"])
    added = idx.add(np.arange(100, 100 + n), codes, present, boxes=boxes, probs=rng.random((n, c)),
                    metadata=[{"path": f"img{i}.jpg"} for i in range(n)])
    assert added == present.sum() == len(idx)
    for cat in range(c):
        D, I, M = idx.search(codes[0, cat], cat, k=n)
        assert D.shape == I.shape == (1, n) and (I[0, present[:, cat].sum():] == -1).all()
        d, ids, meta = D[0][I[0] >= 0], I[0][I[0] >= 0], M[0]
        assert set(ids - 100) == set(np.flatnonzero(present[:, cat]))   # all of them, and only them
        assert all(m["category"] == "rgb"[cat] for m in meta)
        assert (np.diff(d) >= 0).all()
        for i, m in zip(ids, meta):
            assert m["path"] == f"img{i - 100}.jpg"
            np.testing.assert_allclose(m["box"], boxes[i - 100, cat], atol=1e-5)
    D, I, _ = idx.search(codes[0, 0], 0, k=1)
    assert I.tolist() == [[100]] and D.tolist() == [[0]]
    idx.save(tmp_path / "cat")
    again = CategoryIndex.load(tmp_path / "cat")
    assert len(again) == len(idx)
    np.testing.assert_array_equal(again.search(codes[5, 2], 2, 7)[1], idx.search(codes[5, 2], 2, 7)[1])
    # a batch of mixed categories answers each query as it would alone
    qs, cats = codes[[5, 0, 7, 3, 5], [2, 1, 0, 2, 1]], np.array([2, 1, 0, 2, 1])
    D, I, M = idx.search(qs, cats, k=7)
    assert D.shape == I.shape == (5, 7) and len(M) == 5
    for i in range(5):
        d1, i1, m1 = idx.search(qs[i], int(cats[i]), k=7)
        np.testing.assert_array_equal(D[i], d1[0])
        np.testing.assert_array_equal(I[i], i1[0])
        assert M[i] == m1[0] and len(M[i]) == (I[i] >= 0).sum()
    D, I, _ = idx.search(qs[:2], 1, k=3)  # one category for the whole batch
    np.testing.assert_array_equal(I, idx.search(qs[:2], [1, 1], k=3)[1])
    for bad_q, bad_c, msg in [(qs, [0, 1], "categories must be one integer or 5"), (qs, 3, "category 3 out of range"),
                              (qs[:1], [-1], "out of range"), (qs[:, :2], 0, "do not match"),
                              (qs.astype(np.int64), 0, "packed uint8"), (qs, [0.5] * 5, "integers")]:
        with pytest.raises(DeephashError, match=msg):
            idx.search(bad_q, bad_c)
    groups = idx.query(codes[3], np.array([0.9, 0.2, 0.7]), k=4)
    assert [g["class"] for g in groups] == ["r", "b"]
    assert [g["class"] for g in idx.query(codes[3], np.array([0.1, 0.3, 0.2]), k=4)] == ["g"]
    with pytest.raises(DeephashError):
        idx.add([0], codes[:1, :2], present[:1, :2])
    with pytest.raises(DeephashError):
        CategoryIndex.load(tmp_path)


def test_category_ties_are_ordered_by_a_second_distance():
    """Collapsed category codes (all equal) tie at distance 0; the tie-break must order them by the second
    distance, keep the category distance first, and reach past the first k in insertion order."""
    bits, n = 16, 12
    codes = np.zeros((n, 1, bits // 8), np.uint8)
    codes[10, 0, 0] = 0b11  # one image at category distance 2
    idx = CategoryIndex(bits, ["dog"])
    idx.add(np.arange(n), codes, np.ones((n, 1), bool))
    second = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 5])  # second distance per image id
    D, I, _ = idx.search(codes[0, 0], 0, k=4)
    assert I[0].tolist() == [0, 1, 2, 3]                                  # insertion order without a tie-break
    D, I, _ = idx.search(codes[0, 0], 0, k=4, tiebreak=lambda row, i: second[i])
    assert I[0].tolist() == [9, 8, 7, 6] and D[0].tolist() == [0, 0, 0, 0]   # 10: second 0, category distance 2
    D, I, _ = idx.search(codes[0, 0], 0, k=12, tiebreak=lambda row, i: second[i])
    assert I[0, -1] == 10 and D[0, -1] == 2 and sorted(I[0].tolist()) == list(range(n))
    # in a batch each query gets its own tie-break; 13 > 12 images: the last slot is missing
    D, I, _ = idx.search(np.repeat(codes[0:1, 0], 2, 0), [0, 0], k=13,
                         tiebreak=lambda row, i: second[i] if row == 0 else -i)
    assert I[0, :3].tolist() == [9, 8, 7] and I[1, :3].tolist() == [11, 9, 8] and (I[:, -1] == -1).all()


def _yolo_squares(root, n, seed):
    """Images with 1-2 coloured squares on grey noise; class = colour."""
    rng = np.random.default_rng(seed)
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [red, green, blue]\n")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(90, 150, (48, 48, 3)).astype(np.uint8)
            lines = []
            for k, cls in enumerate(rng.choice(3, int(rng.integers(1, 3)), replace=False)):
                s, x, y = 16, (2 + 26 * k), int(rng.integers(0, 32))
                img[y:y + s, x:x + s] = COLOURS[cls]
                lines.append(f"{cls} {(x + s / 2) / 48} {(y + s / 2) / 48} {s / 48} {s / 48}")
            Image.fromarray(img).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_iah_train_encode_search_end_to_end(tmp_path):
    data = _yolo_squares(tmp_path / "sq", 24, 0)
    runner = CliRunner()
    r = runner.invoke(app, ["iah-train", "--data", str(data), "--bits", "32", "--image-size", "48", "--epochs", "6",
                            "--batch-size", "12", "--lr", "3e-3", "--top-n", "12", "--out", str(tmp_path / "run"),
                            "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["iah-encode", "--checkpoint", str(tmp_path / "run" / "last.ckpt"), "--data", str(data),
                            "--split", "train", "--out", str(tmp_path / "idx"), "-q"])
    assert r.exit_code == 0, r.output
    assert "24 semantic codes" in r.output
    query = data / "images" / "val" / "0.png"
    qlabels = {["red", "green", "blue"][int(line.split()[0])] for line in
               (data / "labels" / "val" / "0.txt").read_text().split("\n") if line}
    r = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--mode", "category", "--image", str(query),
                            "-k", "5", "--json", "--threshold", "0.3", "--grid", str(tmp_path / "grid.png")])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and (tmp_path / "grid.png").is_file()
    found, searched = lines[0]["results"], lines[0]["categories"]
    assert lines[0]["mode"] == "category" and searched
    assert [c["prob"] for c in searched] == sorted((c["prob"] for c in searched), reverse=True)
    assert len(found) == 5 * len(searched)
    for n, c in enumerate(searched):
        group = found[5 * n:5 * (n + 1)]
        assert all(res["category"] == c["name"] and len(res["box"]) == 4 for res in group)
        assert [res["distance"] for res in group] == sorted(res["distance"] for res in group)
    # the tiny model learns the colours: the query's most probable category is one it contains
    assert searched[0]["name"] in qlabels
    r = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--image", str(query), "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.splitlines()[0])["results"]
    assert len(res) == 3 and qlabels & set(res[0]["labels"])
    r = runner.invoke(app, ["search", "--index", str(tmp_path / "run"), "--mode", "category", "--image", str(query)])
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output == (
        f"error: no deephash index at {tmp_path / 'run'} (missing manifest.json)\n")
