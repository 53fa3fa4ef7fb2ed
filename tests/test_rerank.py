"""Two-stage search: an index that keeps a float16 feature vector per image (stored, added and removed with
its codes) re-ranks the k*F Hamming nearest by cosine; the library, the CLI and the HTTP API expose it."""

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from deephash.cli import app
from deephash.errors import CorruptFileError, DeephashError, InvalidInputError
from deephash.index import HammingIndex
from deephash.retrieval import Encoder, ImageIndex, open_index
from deephash.service import Settings, create_app

runner = CliRunner()


def test_hamming_index_keeps_features_aligned_with_ids_through_add_remove_save(tmp_path):
    rng = np.random.default_rng(0)
    idx = HammingIndex(16)
    idx.keep_features(4)
    codes = rng.integers(0, 256, (6, 2), dtype=np.uint8)
    feats = rng.normal(size=(6, 4)).astype(np.float32)
    ids = idx.add(codes, features=feats)
    idx.remove([ids[1], ids[4]])
    idx.add(codes[:2], ids=[40, 41], features=feats[:2] * 2)
    idx.save(tmp_path / "i")
    back = HammingIndex.load(tmp_path / "i")
    assert back.feature_dim == 4 and len(back) == 6
    want = np.concatenate([feats[[0, 2, 3, 5]], feats[:2] * 2]).astype(np.float16)
    assert np.array_equal(back.get_features([0, 2, 3, 5, 40, 41]), want)
    assert np.array_equal(back.get_features([41, 0]), want[[5, 0]])
    found = back.find_features([41, 1, 0])                  # id 1 was removed: a NaN row, ranked last
    assert np.array_equal(found[[0, 2]], want[[5, 0]].astype(np.float32)) and np.isnan(found[1]).all()
    with pytest.raises(InvalidInputError, match="keeps 4-value features"):
        back.add(codes[:1])                                  # an index with features needs them
    with pytest.raises(InvalidInputError, match=r"features must be float \(1, 4\)"):
        back.add(codes[:1], features=np.zeros((1, 3)))
    plain = HammingIndex(16)
    plain.add(codes[:1])
    with pytest.raises(InvalidInputError, match="keeps no features"):
        plain.add(codes[:1], features=feats[:1])
    with pytest.raises(DeephashError, match="holds 1 codes without them"):
        plain.keep_features(4)


def test_a_damaged_features_file_is_refused(tmp_path):
    idx = HammingIndex(16)
    idx.keep_features(3)
    idx.add(np.zeros((2, 2), np.uint8), features=np.ones((2, 3)))
    idx.save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    path = tmp_path / "i" / manifest["files"]["features"]["name"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="checksum"):
        HammingIndex.load(tmp_path / "i")


@pytest.fixture(scope="module")
def feature_index(served_indexes, tmp_path_factory):
    """The service tests' 16-bit digits model (conftest), indexing its database split with features."""
    d = tmp_path_factory.mktemp("rerank")
    ckpt = served_indexes["dsh"].parent / "dsh" / "last.ckpt"
    r = runner.invoke(app, ["index", "build", "--checkpoint", str(ckpt), "--features", "--out", str(d / "idx"), "-q"])
    assert r.exit_code == 0 and "-value features" in r.output, r.output
    return ckpt, d / "idx"


def test_rerank_orders_the_hamming_candidates_by_cosine(feature_index, tmp_path):
    ckpt, folder = feature_index
    index = open_index(folder)
    assert index.keeps_features
    query = Encoder(ckpt).dataset(split="query").image_u8(0)
    plain = index.search(images=[query], k=40)[0].results
    ranked = index.search(images=[query], k=10, rerank=4)[0].results
    assert {r.id for r in ranked} <= {r.id for r in plain}     # the 10 best of the 40 Hamming nearest
    enc = index.encode([query], features=True)
    cand = np.array([r.id for r in plain])
    f = index.get_features(cand).astype(np.float32)
    q = enc.features[0].astype(np.float32)
    cos = f @ q / (np.linalg.norm(f, axis=1) * np.linalg.norm(q))
    assert [r.id for r in ranked] == cand[np.argsort(-cos, kind="stable")[:10]].tolist()
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert [r.id for r in ranked] != [r.id for r in plain[:10]]    # it did re-order
    by_id = index.search(ids=[3], k=5, rerank=3)[0].results
    assert by_id[0].id == 3 and by_id[0].score == pytest.approx(1.0, abs=1e-3)

    # the CLI: --rerank, and index add keeps the new images' features
    from PIL import Image

    Image.fromarray(query).save(tmp_path / "q.png")
    r = runner.invoke(app, ["search", "--index", str(folder), "--image", str(tmp_path / "q.png"), "-k", "10",
                            "--rerank", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads(r.output)["results"]] == [x.id for x in ranked]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    r = runner.invoke(app, ["index", "add", "--index", str(copy), "--images", str(tmp_path)])
    assert r.exit_code == 0, r.output
    grown = open_index(copy)
    new_id = int(grown.ids[-1])
    assert np.allclose(grown.get_features([new_id])[0], enc.features[0], atol=1e-2)
    assert grown.search(images=[query], k=1, rerank=5)[0].results[0].id in (new_id, *[x.id for x in ranked])

    for kw, word in (({"codes": enc.codes}, "a code has no features"), ({"images": [query], "rerank": 0}, "positive"),
                     ({"images": [query], "mode": "category"}, "category mode")):
        with pytest.raises(InvalidInputError, match=word):
            index.search(k=5, **{"rerank": 2, **kw})
    plain_index = ImageIndex.from_codes(grown.encoder.encode_split(split="query")[0])
    with pytest.raises(InvalidInputError, match="keeps no feature vectors"):
        plain_index.search(ids=[0], rerank=2)
    r = runner.invoke(app, ["search", "--index", str(folder), "--query", str(tmp_path / "none.npz"), "--rerank", "0"])
    assert r.exit_code == 2


def test_http_search_takes_rerank(feature_index):
    ckpt, folder = feature_index
    index = open_index(folder)
    query = Encoder(ckpt).dataset(split="query").image_u8(0)
    want = [r.id for r in index.search(images=[query], k=5, rerank=3)[0].results]
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(query).save(buf, "PNG")
    with TestClient(create_app(Settings(str(folder), warm_up=False))) as c:
        r = c.post("/v1/search", files={"image": ("q.png", buf.getvalue(), "image/png")},
                   data={"k": "5", "rerank": "3"})
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["results"]] == want and "score" in r.json()["results"][0]
        r = c.post("/v1/search", json={"id": 3, "k": 5, "rerank": 3})
        assert r.status_code == 200 and r.json()["results"][0]["id"] == 3
        code = index.get_codes([3])[0].tobytes().hex()
        r = c.post("/v1/search", json={"code": code, "k": 5, "rerank": 3})
        assert r.status_code == 422 and "code has no features" in r.json()["detail"]
        r = c.post("/v1/search", json={"id": 3, "rerank": 1000})
        assert r.status_code == 422 and "rerank must be 1 to" in r.json()["detail"]
