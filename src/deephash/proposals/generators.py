"""Proposal generators: ``gen(image_u8) -> (boxes (M,4) float32 pixels, scores (M,))``.

Each has a ``key`` naming the generator and its parameters, so cached results of
different settings never mix.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


class GridProposals:
    """Multi-scale sliding windows: square-ish windows of ``scales`` × the shorter side, stepped by
    ``stride`` × window, plus ``aspects`` variants. Content-independent, so every image of one size
    gets the same boxes; scores favour coarser scales first, then scan order, so top-N keeps every scale
    represented only when N is large enough (set N ≥ the grid size to keep all)."""

    def __init__(self, scales=(0.3, 0.5, 0.7), stride: float = 0.5, aspects=(1.0,)):
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise InvalidInputError(f"grid scales must be in (0, 1], got {scales}")
        if not 0 < stride <= 1:
            raise InvalidInputError(f"grid stride must be in (0, 1], got {stride}")
        self.scales, self.stride, self.aspects = tuple(scales), float(stride), tuple(aspects)
        self.key = f"grid-s{'_'.join(map(str, self.scales))}-st{self.stride}-a{'_'.join(map(str, self.aspects))}"

    def boxes(self, h: int, w: int) -> np.ndarray:
        out = []
        for s in sorted(self.scales, reverse=True):
            for a in self.aspects:
                bw = min(w, s * min(h, w) * np.sqrt(a))
                bh = min(h, s * min(h, w) / np.sqrt(a))
                xs = _positions(w, bw, self.stride)
                ys = _positions(h, bh, self.stride)
                gx, gy = np.meshgrid(xs, ys)
                out.append(np.stack([gx.ravel(), gy.ravel(), gx.ravel() + bw, gy.ravel() + bh], 1))
        return np.concatenate(out).astype(np.float32)

    def __call__(self, image: np.ndarray):
        b = self.boxes(*image.shape[:2])
        return b, np.linspace(1.0, 0.0, len(b), endpoint=False, dtype=np.float32)


def _positions(extent: float, size: float, stride: float) -> np.ndarray:
    if size >= extent:
        return np.zeros(1)
    n = int(np.floor((extent - size) / (stride * size))) + 1
    return np.linspace(0, extent - size, max(n, 2))


class SelectiveSearchProposals:
    """OpenCV selective search (``cv2.ximgproc.segmentation``), fast or quality mode. Images are
    downscaled so the longer side is at most ``max_side`` (the search is slow on large images) and the
    boxes scaled back; its output order is its ranking, so earlier boxes score higher."""

    def __init__(self, mode: str = "fast", max_side: int = 256):
        if mode not in ("fast", "quality", "single"):
            raise InvalidInputError(f"selective search mode must be fast, quality or single, got {mode!r}")
        self.mode, self.max_side = mode, int(max_side)
        self.key = f"selective-{mode}-{self.max_side}"

    def __call__(self, image: np.ndarray):
        try:
            import cv2
        except ImportError:
            raise InvalidInputError("selective search needs OpenCV: pip install opencv-contrib-python-headless") from None
        if not hasattr(cv2, "ximgproc"):
            raise InvalidInputError("selective search needs opencv-contrib (cv2.ximgproc): "
                                "pip install opencv-contrib-python-headless")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        img = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        cv2.setNumThreads(1)
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(np.ascontiguousarray(img[:, :, ::-1]))
        {"fast": ss.switchToSelectiveSearchFast, "quality": ss.switchToSelectiveSearchQuality,
         "single": ss.switchToSingleStrategy}[self.mode]()
        rects = np.asarray(ss.process(), dtype=np.float32).reshape(-1, 4)  # x, y, w, h
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], 1) / scale
        return boxes, np.linspace(1.0, 0.0, len(boxes), endpoint=False, dtype=np.float32)


def boxes_from_labels(boxes_norm: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth proposals from (n, 5) rows ``class, x1, y1, x2, y2`` normalised to [0, 1]."""
    b = np.asarray(boxes_norm, dtype=np.float32).reshape(-1, 5)[:, 1:] * np.array([w, h, w, h], np.float32)
    return b, np.ones(len(b), np.float32)


GENERATORS = {"grid": GridProposals, "selective": SelectiveSearchProposals}


def make_generator(name: str, **kwargs):
    if name not in GENERATORS:
        raise InvalidInputError(f"unknown proposal method {name!r}; choose from {', '.join(GENERATORS)} "
                            "(or ground-truth boxes from a dataset that has them)")
    return GENERATORS[name](**kwargs)
