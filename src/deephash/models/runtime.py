"""Inference of a ``HashingModel`` in ONNX Runtime or OpenVINO: codes equal to PyTorch's up to rounding (at
least 99.9% of bits equal, mAP within 0.002), several times the images per second on CPU.

On this project's 2-core CPU, PyTorch's eager EfficientNet-Lite0 at 160 px (channels-last, fp32) is the slowest
stage of adding images; ONNX Runtime runs the same fp32 graph with fused depthwise convolutions, and its
outputs differ from PyTorch's by rounding only, so only an output within about 1e-5 of zero can flip its bit
(docs/ingest.md: every bit equal on 6,000 CIFAR-10 images and on coco128; the bound above has margin for other
CPUs, and tests/test_fast_encode.py asserts it). bf16 autocast was also measured and rejected: 98.95% of bits
equal, below the 99.9% the codes must keep.

The model (backbone, head and input normalisation), or the frozen prefix of a model with ``train_blocks``
(``part="prefix"``, what its store keeps), is exported to ONNX once per distinct set of weights and
kept in ``$DEEPHASH_CACHE/onnx`` under the sha256 of what the graph depends on. The graph runs in the first
installed of ``BACKENDS`` (docs/ingest.md has the measurements behind the order), each in fp32 (OpenVINO's CPU
plugin would otherwise pick bf16 on a CPU with AVX512-BF16, which changes bits). ``DEEPHASH_RUNTIME`` picks
one (``openvino``, ``onnxruntime``) or none (``torch``). Without either optional package (``pip install
deephash[fast]``, ``deephash[openvino]``), or if the export fails, models run in PyTorch as before.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings

import numpy as np
import torch
from torch import nn

log = logging.getLogger("deephash.runtime")
RUNTIME_ENV = "DEEPHASH_RUNTIME"  # "torch": PyTorch only; "openvino" / "onnxruntime": that runtime only
EXPORT_VERSION = 1                # raised when the exported graph changes
BACKENDS = ("onnxruntime", "openvino")  # first installed one wins


class _Forward(nn.Module):
    """What one pass gives: the relaxed codes and the pooled features they came from."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        f = self.model.features(x)
        return self.model.head(f), f


class _Prefix(nn.Module):
    """The frozen prefix's map of a model with ``train_blocks`` (what its store keeps)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return (self.model.stored_input(x),)


PARTS = {"forward": (_Forward, ("codes", "features")), "prefix": (_Prefix, ("maps",))}


class OnnxRunner:
    """Callable (N, 3, H, W) float tensor in [0, 1] → (relaxed codes, pooled features), both float32 tensors
    (or the part's outputs, e.g. (prefix maps,))."""

    def __init__(self, model_bytes: bytes, threads: int | None = None, outputs=("codes", "features"),
                 spin: bool = False):
        from ..utils.onnx import onnx_session

        self.session = onnx_session(model_bytes, threads, spin)
        self.version = version_name("onnxruntime")
        self.outputs = tuple(outputs)
        self._lock = threading.Lock()  # one run at a time: the session already uses every core

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            out = self.session.run(list(self.outputs), {"images": a})
        return tuple(torch.from_numpy(o) for o in out)


class OpenVinoRunner:
    """The same callable as ``OnnxRunner``, the graph compiled by OpenVINO's CPU plugin in fp32."""

    def __init__(self, model_bytes: bytes, threads: int | None = None, outputs=("codes", "features")):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_bytes), "CPU", config)
        self.outputs = [self.compiled.output(name) for name in outputs]
        self.version = version_name("openvino")
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one request, one run at a time (it already uses every core)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            out = self.request.infer({"images": a})  # share_outputs=False: copies, not the request's buffers
            return tuple(torch.from_numpy(out[o]) for o in self.outputs)


RUNNERS = {"onnxruntime": OnnxRunner, "openvino": OpenVinoRunner}


def backend() -> str | None:
    """The runtime ``onnx_runner`` uses: ``DEEPHASH_RUNTIME`` if set (None for ``torch`` or one not installed),
    else the first of ``BACKENDS`` installed; None when there is none (or no ``onnx``, which the export needs)."""
    from importlib.util import find_spec

    choice = os.environ.get(RUNTIME_ENV, "").lower()
    if choice == "torch" or find_spec("onnx") is None:  # torch's exporter needs onnx (installed: not imported
        return None                                     # here, which takes 0.6 s, most of a cached model's load)
    for name in ((choice,) if choice in RUNNERS else BACKENDS):
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return None


def version_name(name: str) -> str:
    """"<runtime> <version>": what cached results computed in that runtime are keyed by."""
    return f"{name} {__import__(name).__version__}"


def available() -> bool:
    return backend() is not None


def graph_key(model, part: str = "forward") -> str:
    """sha256 of what the exported graph depends on: structure, every weight and buffer, input size, versions."""
    h = hashlib.sha256(repr((EXPORT_VERSION, torch.__version__, tuple(model.image_size), repr(model))).encode())
    if part != "forward":
        h.update(repr((part, getattr(model, "split_at", 0))).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def export(model, part: str = "forward") -> bytes:
    wrapper, outputs = PARTS[part]
    h, w = model.image_size
    buf = io.BytesIO()
    was = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper(model), (torch.rand(2, 3, h, w),), buf, input_names=["images"],
                              output_names=list(outputs), opset_version=17, dynamo=False,
                              dynamic_axes={name: {0: "n"} for name in ("images", *outputs)})
    finally:
        model.train(was)
    return buf.getvalue()


def onnx_runner(model, threads: int | None = None, part: str = "forward") -> OnnxRunner | OpenVinoRunner | None:
    """A runner computing ``model``'s outputs from its ONNX graph (exported once per set of weights, then read
    from the cache) in ``backend()``, or None when no runtime is installed or one is disabled, or the model does
    not export. ``part="prefix"``: the frozen prefix's maps of a model with ``train_blocks`` instead."""
    name = backend()
    if name is None:
        return None
    runner = RUNNERS[name]
    from ..data.cache import cache_dir
    from ..utils.io import atomic_open

    try:
        outputs = PARTS[part][1]
        path = cache_dir() / "onnx" / f"{graph_key(model, part)}.onnx"
        if path.is_file():
            try:
                return _with_graph(runner(path.read_bytes(), threads, outputs), path)
            except Exception:  # noqa: BLE001 - a damaged cache entry is exported again
                pass
        data = export(model, part)
        with atomic_open(path) as fh:
            fh.write(data)
        return _with_graph(runner(data, threads, outputs), path)
    except Exception as e:  # noqa: BLE001 - any failure here only means the slower PyTorch path
        log.warning("%s not used (running in PyTorch): %s", name, str(e).splitlines()[0][:200] if str(e) else e)
        return None


def _with_graph(runner, path):
    runner.graph = path  # the cached graph file it runs (``retrieval.query_graph`` runs it again without torch)
    return runner
