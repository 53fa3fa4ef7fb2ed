"""On-disk cache of proposals, keyed by generator settings and the image's content hash."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ..data.cache import cache_dir
from ..utils.io import atomic_write


def image_key(image: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


class ProposalCache:
    """One ``.npy`` file per (settings, image) under ``cache_dir()/proposals/<settings>/``; written atomically
    so a crash never leaves a half-written entry that later reads as valid."""

    def __init__(self, key: str, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "proposals" / key
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, image_hash: str) -> Path:
        return self.root / image_hash[:2] / f"{image_hash}.npy"

    def get(self, image_hash: str) -> np.ndarray | None:
        p = self._path(image_hash)
        if not p.is_file():
            return None
        try:
            return np.load(p)
        except (OSError, ValueError):
            return None

    def put(self, image_hash: str, boxes: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(boxes, dtype=np.float32))
        atomic_write(self._path(image_hash), lambda fh: fh.write(buf.getvalue()))
