"""The fast ingest path gives the codes of the plain one up to rounding: ONNX Runtime (and OpenVINO) against
PyTorch, on a tiny model and on a trained one, and the threaded decoder against decoding one image after another."""

import numpy as np
import pytest
import torch
from PIL import Image

from deephash.codes import encode_outputs
from deephash.models import create_model
from deephash.models import runtime as rt

# What docs/ingest.md promises of the fast path ("Codes equal up to rounding"): at least this share of bits
# equal to PyTorch's codes, and mAP within this of PyTorch's. Measured 100% and 0 on 6,000 CIFAR-10 images
# (benchmarks/runtime_agreement.py); the margin covers other CPUs' kernels (AVX2 or AVX-512), whose rounding
# differs, flipping only outputs within about 1e-5 of zero.
BITS_EQUAL_MIN = 0.999
MAP_DIFF_MAX = 0.002


def _bits_equal(a, b) -> float:
    return float((np.unpackbits(a, axis=1) == np.unpackbits(b, axis=1)).mean())


def _tiny():
    torch.manual_seed(0)
    return create_model("dsh", bits=32, image_size=32).eval()


def test_onnx_runtime_gives_the_codes_and_features_of_pytorch(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _tiny()
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want_codes, want_feats = model.encode(x, features=True)
    runner = rt.onnx_runner(model)
    assert runner is not None
    codes, feats = model.use_runtime(runner).encode(x, features=True)
    bits = lambda c: np.unpackbits(c, axis=1)  # noqa: E731
    assert _bits_equal(codes, want_codes) >= BITS_EQUAL_MIN
    assert np.allclose(feats.astype(np.float32), want_feats.astype(np.float32), rtol=1e-2, atol=1e-2)
    # a second runner reads the cached graph; other weights make another graph
    assert rt.graph_key(model) == rt.graph_key(_tiny())
    other = _tiny()
    with torch.no_grad():
        other.hash.weight.mul_(-1)
    assert rt.graph_key(other) != rt.graph_key(model)
    flipped, _ = other.use_runtime(rt.onnx_runner(other)).encode(x, features=True)
    assert (bits(flipped) != bits(codes)).mean() > 0.9     # the cache did not hand back the first model's graph
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    assert rt.onnx_runner(model) is None


def test_onnx_runtime_codes_of_a_trained_model_keep_the_bound(tmp_path, monkeypatch):
    """The stated bound on a trained model and real images (digits): bits equal, and mAP of ONNX Runtime's codes,
    alone and as queries against PyTorch's database codes, within MAP_DIFF_MAX of PyTorch's."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from deephash.data import load_source, make_split
    from deephash.evaluation import evaluate
    from deephash.runs import encode
    from deephash.train import TrainConfig, train

    monkeypatch.setenv(rt.RUNTIME_ENV, "onnxruntime")
    split = make_split(load_source("digits"), "holdout", 0)
    db = split.train.subset(np.arange(500))
    cfg = TrainConfig(bits=48, epochs=3, batch_size=100, optimizer="adam", schedule="cosine", threads=1,
                      out=str(tmp_path / "run"))
    model = train(cfg, db, progress=False).model.eval()

    def codes(runner):
        model.use_runtime(runner)
        return [encode((model, cfg), part, progress=False).codes for part in (split.query, db)]

    tq, tdb = codes(None)
    runner = rt.onnx_runner(model)
    assert isinstance(runner, rt.OnnxRunner)
    oq, odb = codes(runner)
    assert _bits_equal(oq, tq) >= BITS_EQUAL_MIN and _bits_equal(odb, tdb) >= BITS_EQUAL_MIN

    def map_(q, d):
        return evaluate(q, d, split.query.labels, db.labels, bits=48, progress=False)["metrics"]["mAP"]["tie_aware"]

    want = map_(tq, tdb)
    assert want > 0.5  # a trained ranking, not noise
    assert abs(map_(oq, odb) - want) <= MAP_DIFF_MAX and abs(map_(oq, tdb) - want) <= MAP_DIFF_MAX


def _without(monkeypatch, *modules):
    import builtins

    real = builtins.__import__

    def blocked(name, *a, **kw):
        if name in modules:
            raise ImportError(f"no {name}")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", blocked)


def test_onnx_runtime_missing_falls_back_to_openvino_then_pytorch(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path))
    _without(monkeypatch, "onnxruntime", "openvino")
    assert rt.backend() is None and rt.onnx_runner(_tiny()) is None
    monkeypatch.undo()
    pytest.importorskip("onnx")
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path))
    _without(monkeypatch, "onnxruntime")
    assert rt.backend() == "openvino" and isinstance(rt.onnx_runner(_tiny()), rt.OpenVinoRunner)


def test_openvino_gives_the_codes_and_features_of_pytorch_in_fp32(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path))
    monkeypatch.setenv(rt.RUNTIME_ENV, "openvino")
    model = _tiny()
    x = torch.rand(48, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        want_y, want_f = model(x), model.features(x)
    runner = rt.onnx_runner(model)
    assert isinstance(runner, rt.OpenVinoRunner)
    y, f = runner(x)
    # fp32 (not the bf16 OpenVINO picks by default on CPUs with AVX512-BF16): rounding-level differences only
    assert torch.allclose(y, want_y, atol=1e-4) and torch.allclose(f, want_f, rtol=1e-4, atol=1e-4)
    codes = model.use_runtime(runner).encode(x)
    assert _bits_equal(codes, encode_outputs(want_y)) >= BITS_EQUAL_MIN
    y2, _ = runner(x[:5])  # another batch size, and outputs not overwritten by the next run
    assert torch.allclose(y2, want_y[:5], atol=1e-4) and torch.allclose(y, want_y, atol=1e-4)


def test_onnx_runtime_threads_do_not_spin():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    runner = rt.OnnxRunner(rt.export(_tiny()))
    assert runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threaded_decoding_keeps_order_codes_and_failures(tmp_path):
    from deephash.retrieval.encoder import CHUNK, _pixels

    rng = np.random.default_rng(0)
    paths = []
    for i in range(CHUNK * 2 + 5):
        p = tmp_path / f"{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    (tmp_path / "bad.jpg").write_text("not an image")
    paths.insert(7, tmp_path / "bad.jpg")

    class Fake:  # Encoder's decoding without a model
        from deephash.retrieval.encoder import Encoder
        _decoded = Encoder._decoded
        image_size = (32, 32)

        def __init__(self, threads):
            import threading
            self.decode_threads, self._pool, self._pool_lock = threads, None, threading.Lock()

    got = {}
    for threads in (1, 3):
        chunks = list(Fake(threads)._decoded(paths, skip_unreadable=True))
        got[threads] = ([i for pos, _, _ in chunks for i in pos], np.stack([p for _, px, _ in chunks for p in px]),
                        [f for _, _, bad in chunks for f in bad])
    assert got[1][0] == got[3][0] == [i for i in range(len(paths)) if i != 7]
    assert np.array_equal(got[1][1], got[3][1])
    assert np.array_equal(got[3][1][0], _pixels(paths[0], (32, 32)))
    assert len(got[3][2]) == 1 and "bad.jpg" in got[3][2][0][0]
    with pytest.raises(Exception, match="bad.jpg"):
        list(Fake(3)._decoded(paths, skip_unreadable=False))


def test_a_damaged_cached_graph_is_exported_again(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path))
    model = _tiny()
    assert rt.onnx_runner(model) is not None
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    cached.write_bytes(b"garbage")
    x = torch.rand(4, 3, 32, 32)
    codes = model.use_runtime(rt.onnx_runner(model)).encode(x)
    assert np.array_equal(codes, model.use_runtime(None).encode(x)) and cached.stat().st_size > 1000
