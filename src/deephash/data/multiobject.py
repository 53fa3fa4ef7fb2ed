"""A multi-object benchmark built from single-object images: each canvas holds 1..``max_objects`` objects
pasted at random positions and scales on a varied background (noise, gradients, stripes, or a blurred crop
of another source image), with multi-hot labels and exact boxes. Seeded and cached.

Used to measure instance-aware hashing where real multi-label data with boxes is small (coco128).
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..utils.io import atomic_write
from ..utils.progress import tqdm
from .base import ArrayDataset
from .cache import cache_dir
from .detection import BoxArrayDataset


def _background(rng: np.random.Generator, size: int, sources: np.ndarray) -> np.ndarray:
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # coloured noise at a random scale
        cell = int(rng.integers(2, 12))
        small = rng.uniform(0, 255, (size // cell + 1, size // cell + 1, 3))
        bg = np.kron(small, np.ones((cell, cell, 1)))[:size, :size]
    elif kind == 1:  # linear gradient between two colours
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy)[..., None]
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        bg = a * (1 - t) + b * t
    elif kind == 2:  # stripes / waves
        f = rng.uniform(2, 10)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))[..., None]
        bg = rng.uniform(0, 255, 3) * t + rng.uniform(0, 255, 3) * (1 - t)
    else:  # an upscaled, blurred source image: natural texture with no clear object
        src = torch.from_numpy(sources[rng.integers(len(sources))]).permute(2, 0, 1)[None].float()
        src = F.interpolate(F.avg_pool2d(src, 3, 1, 1), size=(size, size), mode="bilinear", align_corners=False)
        bg = src[0].permute(1, 2, 0).numpy()
    bg = bg + rng.normal(0, 6, bg.shape)
    return bg.clip(0, 255)


def _paste(canvas: np.ndarray, obj: np.ndarray, x: int, y: int, s: int) -> None:
    t = torch.from_numpy(obj).permute(2, 0, 1)[None].float()
    canvas[y:y + s, x:x + s] = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False,
                                             antialias=True)[0].permute(1, 2, 0).numpy()


def generate_multiobject(source: ArrayDataset, n: int, canvas: int = 96, max_objects: int = 4,
                         scale: tuple[float, float] = (0.3, 0.55), max_overlap: float = 0.3, seed: int = 0,
                         progress: bool = True, name: str = "multiobject") -> BoxArrayDataset:
    """``n`` canvases of ``canvas``×``canvas``; objects are whole single-label source images (their class is the
    object's label) resized to ``scale`` × canvas, placed so no object is covered by later ones beyond
    ``max_overlap`` of its area (retried, else dropped)."""
    if source.multilabel:
        raise InvalidInputError("the multi-object generator needs a single-label source (e.g. CIFAR-10)")
    if n < 1 or canvas < 8 or max_objects < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise InvalidInputError(f"bad multi-object settings: n={n}, canvas={canvas}, max_objects={max_objects}, "
                            f"scale={scale}")
    rng = np.random.default_rng(seed)
    classes = source.labels.argmax(1)
    images = np.empty((n, canvas, canvas, 3), np.uint8)
    labels = np.zeros((n, source.num_classes), np.uint8)
    boxes = []
    for i in tqdm(range(n), desc="multi-object canvases", disable=not progress, leave=False):
        img = _background(rng, canvas, source.images)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(10):
                s = int(round(rng.uniform(*scale) * canvas))
                x, y = int(rng.integers(0, canvas - s + 1)), int(rng.integers(0, canvas - s + 1))
                if all(_covered(p, (x, y, s)) <= max_overlap for p in placed):
                    k = int(rng.integers(len(source)))
                    _paste(img, source.images[k], x, y, s)
                    placed.append((x, y, s, int(classes[k])))
                    break
        images[i] = img.round().astype(np.uint8)
        rows = np.array([[c, x / canvas, y / canvas, (x + s) / canvas, (y + s) / canvas] for x, y, s, c in placed],
                        np.float32)
        labels[i, rows[:, 0].astype(int)] = 1
        boxes.append(rows)
    return BoxArrayDataset(images, labels, source.class_names, boxes, name=name)


def _covered(prev: tuple, new: tuple) -> float:
    """Fraction of ``prev``'s area that ``new`` would cover."""
    px, py, ps = prev[:3]
    nx, ny, ns = new
    w = max(0, min(px + ps, nx + ns) - max(px, nx))
    h = max(0, min(py + ps, ny + ns) - max(py, ny))
    return w * h / (ps * ps)


def cached_multiobject(source: ArrayDataset, n: int, source_key: str, progress: bool = True,
                       **kw) -> BoxArrayDataset:
    """``generate_multiobject`` cached under ``cache_dir()/multiobject`` keyed by the source and settings."""
    settings = json.dumps({"source": source_key, "n": n, **{k: kw[k] for k in sorted(kw)}}, default=list)
    path = cache_dir() / "multiobject" / f"{hashlib.sha256(settings.encode()).hexdigest()[:20]}.npz"
    if path.is_file():
        with np.load(path) as z:
            counts = z["counts"]
            rows = np.split(z["boxes"], np.cumsum(counts)[:-1])
            return BoxArrayDataset(z["images"], z["labels"], list(z["class_names"]), rows,
                                   name=kw.get("name", "multiobject"))
    ds = generate_multiobject(source, n, progress=progress, **kw)
    buf = io.BytesIO()
    np.savez(buf, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names),
             boxes=np.concatenate(ds.boxes), counts=np.array([len(b) for b in ds.boxes]))
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))
    return ds
