"""Query images to codes without importing torch: the ONNX graph the model already runs in, found by the
checkpoint file's digest.

A one-photo ``deephash search --image`` spent most of its 9-15 s importing torch and torchvision and rebuilding
the model for one forward pass. When the model's encoder (``retrieval.Encoder``) runs a pooled model in ONNX
Runtime, it records here which cached graph (``models.runtime``, exported once per set of weights) it runs
for that checkpoint, under the sha256 of the checkpoint file. A later query with the same file finds the
record, decodes the images as the encoder does (``data.load_image`` at the model's input size, scaled to
[0, 1], in the encoder's chunks), runs the same graph with the same session settings (``utils.onnx``),
averages with the mirror image when the model does, and takes signs: the encoder's bits, without torch.
Without a record (another method or runtime, a checkpoint never encoded with on this machine) ``ImageIndex``
loads the model as before, and that load writes the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..codes import encode_outputs

RECORD_FORMAT = "deephash-query-graph/1"
CHUNK = 64  # images per run: retrieval.encoder.CHUNK, so a batch of queries runs in the encoder's batches


def checkpoint_digest(path: str | Path) -> str:
    """sha256 of a checkpoint file's bytes: what a record is found by (a changed file finds none)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _software() -> str:
    """The version that wrote a record: after an upgrade, queries load the model once and record it again."""
    from .. import __version__

    return f"deephash {__version__}"


def _record_path(checkpoint: str | Path) -> Path:
    from ..data.cache import cache_dir

    p = Path(checkpoint)
    p = p / "last.ckpt" if p.is_dir() else p  # a run folder means its last checkpoint (methods.checkpoint_file)
    return cache_dir() / "onnx" / f"checkpoint-{checkpoint_digest(p)}.json"


def remember(checkpoint: str | Path, runner, model) -> None:
    """Record that ``model`` (a ``HashingModel`` loaded from ``checkpoint`` and encoded by ``encode_dataset``)
    runs ``runner``'s cached graph in ONNX Runtime. Other runners (OpenVINO) are not recorded; a cache that
    cannot be written only means the next query loads the model."""
    graph = getattr(runner, "graph", None)
    if graph is None or not hasattr(runner, "session"):
        return
    record = {"format": RECORD_FORMAT, "software": _software(), "graph": Path(graph).name, "bits": int(model.bits),
              "image_size": [int(v) for v in model.image_size], "mirror_average": bool(model.mirror_average)}
    from ..utils.io import atomic_open

    try:
        path = _record_path(checkpoint)
        if path.is_file() and json.loads(path.read_text()) == record:
            return
        with atomic_open(path) as fh:
            fh.write(json.dumps(record).encode())
    except (OSError, ValueError):
        pass


class QueryGraph:
    """Encodes image files with a recorded graph: ``encode(paths, features)`` -> (packed codes, float16
    features or None), as ``Encoder.encode_images`` gives them."""

    def __init__(self, session, bits: int, image_size: tuple[int, int], mirror_average: bool):
        self.session, self.bits = session, int(bits)
        self.image_size, self.mirror_average = tuple(image_size), bool(mirror_average)

    @classmethod
    def find(cls, checkpoint: str | Path) -> "QueryGraph | None":
        """The recorded graph of this checkpoint file, or None (no record or graph, no ONNX Runtime, or
        ``DEEPHASH_RUNTIME`` choosing another runtime than the one the record is for)."""
        from importlib.util import find_spec

        if os.environ.get("DEEPHASH_RUNTIME", "").lower() not in ("", "onnxruntime") or not find_spec("onnxruntime"):
            return None
        try:
            path = _record_path(checkpoint)
            record = json.loads(path.read_text())
            if record.get("format") != RECORD_FORMAT or record.get("software") != _software():
                return None  # another deephash may build or pre-process the model otherwise: load it instead
            graph = (path.parent / record["graph"]).read_bytes()
            from ..utils.onnx import onnx_session

            session = onnx_session(graph)
            return cls(session, record["bits"], record["image_size"], record["mirror_average"])
        except Exception:  # noqa: BLE001 - no usable record (missing, damaged, a graph the runtime refuses)
            return None

    def encode(self, images: list, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        from ..data.images import load_image

        codes, feats = [], []
        for s in range(0, len(images), CHUNK):
            pixels = np.stack([load_image(p, self.image_size) for p in images[s:s + CHUNK]])
            x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
            outputs, f = self._run(x)
            if self.mirror_average:
                o2, f2 = self._run(np.ascontiguousarray(x[..., ::-1]))
                outputs, f = (outputs + o2) / 2, (f + f2) / 2
            codes.append(encode_outputs(outputs))
            feats.append(f.astype(np.float16))
        return np.concatenate(codes), (np.concatenate(feats) if features else None)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes, feats = self.session.run(["codes", "features"], {"images": x})
        return codes, feats
