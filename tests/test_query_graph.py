"""Searching by image without torch (``retrieval.query_graph``): the recorded ONNX graph gives the encoder's very
codes and features, a one-photo ``deephash search`` in a fresh process never imports torch, and without a
usable record the model is loaded as before."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.errors import IncompatibleError
from deephash.index import HammingIndex
from deephash.retrieval import ImageIndex, open_index, query_graph
from deephash.retrieval.query_graph import QueryGraph

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = r"""
import sys
from deephash.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print("EXIT", e.code or 0)
print("TORCH", "torch" in sys.modules)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 16-bit DSH model that averages each image with its mirror, trained for one epoch on 60 random images."""
    from deephash.data import ArrayDataset
    from deephash.train import TrainConfig, train

    out = tmp_path_factory.mktemp("qg") / "run"
    rng = np.random.default_rng(1)
    labels = np.eye(3, dtype=np.uint8)[np.arange(60) % 3]
    data = ArrayDataset(rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8), labels, ["a", "b", "c"])
    return train(TrainConfig(bits=16, epochs=1, batch_size=30, out=str(out), mirror_average=True), data,
                 progress=False).checkpoint


def photos(folder: Path) -> list[Path]:
    """Files of several formats, modes and sizes (a large JPEG is decoded in draft mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = []
    for name, shape, mode in [("big.jpg", (300, 200, 3), "RGB"), ("small.jpg", (24, 40, 3), "RGB"),
                              ("gray.png", (30, 20), "L"), ("alpha.png", (32, 32, 4), "RGBA"),
                              ("tiny.png", (8, 8, 3), "RGB")]:
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(folder / name)
        made.append(folder / name)
    return made


def test_the_recorded_graph_gives_the_encoders_codes_and_features(run, tmp_path):
    from deephash.retrieval import Encoder, encoder

    paths = photos(tmp_path / "photos")
    enc = Encoder(run)  # runs in ONNX Runtime, and records which graph for this checkpoint file
    want = enc.encode_images(paths, features=True)
    graph = QueryGraph.find(run)
    assert graph is not None and graph.mirror_average and graph.bits == 16
    codes, feats = graph.encode([str(p) for p in paths], features=True)
    assert np.array_equal(codes, want.codes) and np.array_equal(feats, want.features)
    assert query_graph.CHUNK == encoder.CHUNK  # a batch of queries runs in the encoder's batches
    record = query_graph._record_path(run)
    written = record.read_text()
    record.write_text(json.dumps({**json.loads(written), "software": "deephash 0.0.9"}))
    assert QueryGraph.find(run) is None  # written by another version: the model is loaded instead
    record.write_text(written)
    os.environ["DEEPHASH_RUNTIME"] = "torch"  # another runtime chosen: not this graph
    try:
        assert QueryGraph.find(run) is None
    finally:
        del os.environ["DEEPHASH_RUNTIME"]


def test_a_one_photo_search_never_imports_torch(run, tmp_path, monkeypatch):
    paths = photos(tmp_path / "photos")
    semantic = HammingIndex(16)
    semantic.checkpoint = str(run)
    index = ImageIndex(semantic)
    index.add(paths)  # the model encodes (and records its graph)
    index.save(tmp_path / "idx")
    want = [(r.id, r.distance) for r in index.search(images=[paths[0]], k=3)[0].results]
    p = subprocess.run([sys.executable, "-c", PROBE, "search", str(tmp_path / "idx"), "--image", str(paths[0]),
                        "-k", "3", "--json"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(SRC)))
    lines = p.stdout.splitlines()
    assert lines[-2:] == ["EXIT 0", "TORCH False"], p.stdout + p.stderr
    assert [(r["id"], r["distance"]) for r in json.loads(lines[0])["results"]] == want

    fresh = open_index(tmp_path / "idx")
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "empty-cache"))  # no record: the model is loaded
    assert [(r.id, r.distance) for r in fresh.search(images=[paths[0]], k=3)[0].results] == want
    assert fresh._graph is False and fresh._encoder is not None

    record = query_graph._record_path(run)  # the load above recorded the graph in this cache too
    wrong = {**json.loads(record.read_text()), "bits": 24}
    record.write_text(json.dumps(wrong))
    with pytest.raises(IncompatibleError, match="24-bit codes"):
        open_index(tmp_path / "idx").search(images=[paths[0]], k=3)
