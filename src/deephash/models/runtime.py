"""Inference of a ``HashingModel`` in ONNX Runtime: the same codes, several times the images per second on CPU.

On this project's 2-core CPU, PyTorch's eager EfficientNet-Lite0 at 160 px (channels-last, fp32) is the slowest
stage of adding images; ONNX Runtime runs the same fp32 graph with fused depthwise convolutions, and its
outputs differ from PyTorch's by rounding only (docs/ingest.md: every bit equal on coco128). bf16 autocast was
also measured and rejected: 98.95% of bits equal, below the 99% the codes must keep.

The model (backbone, head and input normalisation) is exported once per distinct set of weights and kept in
``$DEEPHASH_CACHE/onnx`` under the sha256 of what the graph depends on. Without the optional package
``onnxruntime`` (``pip install deephash[fast]``), or if the export fails, or with ``DEEPHASH_RUNTIME=torch``,
models run in PyTorch as before.
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
RUNTIME_ENV = "DEEPHASH_RUNTIME"  # "torch": never use ONNX Runtime
EXPORT_VERSION = 1                # raised when the exported graph changes


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

    def __init__(self, model_bytes: bytes, threads: int | None = None, outputs=("codes", "features")):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        self.version = ort.__version__
        self.outputs = tuple(outputs)
        self._lock = threading.Lock()  # one run at a time: the session already uses every core

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            out = self.session.run(list(self.outputs), {"images": a})
        return tuple(torch.from_numpy(o) for o in out)


def available() -> bool:
    if os.environ.get(RUNTIME_ENV, "").lower() == "torch":
        return False
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        return False
    return True


def graph_key(model, part: str = "forward") -> str:
    """sha256 of what the exported graph depends on: structure, every weight and buffer, input size, versions."""
    import onnxruntime

    h = hashlib.sha256(repr((EXPORT_VERSION, torch.__version__, onnxruntime.__version__, tuple(model.image_size),
                             repr(model))).encode())
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


def onnx_runner(model, threads: int | None = None, part: str = "forward") -> OnnxRunner | None:
    """An ONNX Runtime session computing ``model``'s outputs (exported once per set of weights, then read from
    the cache), or None when ONNX Runtime is not installed or disabled, or the model does not export.
    ``part="prefix"``: the frozen prefix's maps of a model with ``train_blocks`` instead."""
    if not available():
        return None
    from ..data.cache import cache_dir
    from ..utils.io import atomic_open

    try:
        outputs = PARTS[part][1]
        path = cache_dir() / "onnx" / f"{graph_key(model, part)}.onnx"
        if path.is_file():
            try:
                return OnnxRunner(path.read_bytes(), threads, outputs)
            except Exception:  # noqa: BLE001 - a damaged cache entry is exported again
                pass
        data = export(model, part)
        with atomic_open(path) as fh:
            fh.write(data)
        return OnnxRunner(data, threads, outputs)
    except Exception as e:  # noqa: BLE001 - any failure here only means the slower PyTorch path
        log.warning("ONNX Runtime not used (running in PyTorch): %s", str(e).splitlines()[0][:200] if str(e) else e)
        return None
