"""Box arithmetic shared by every generator: clipping, NMS + top-N, the whole-image box."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import nms


def whole_image_box(h: int, w: int) -> np.ndarray:
    return np.array([[0.0, 0.0, float(w), float(h)]], dtype=np.float32)


def clip_boxes(boxes: np.ndarray, h: int, w: int, min_size: float = 1.0) -> np.ndarray:
    """Clip to the image and drop boxes narrower or shorter than ``min_size`` pixels; returns a keep mask
    alongside so scores can follow."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return b, keep


def select_top(boxes: np.ndarray, scores: np.ndarray, h: int, w: int, top_n: int, iou: float = 0.7) -> np.ndarray:
    """The whole-image box, then up to ``top_n - 1`` of the best-scored boxes that survive NMS at ``iou``."""
    b, keep = clip_boxes(boxes, h, w, min_size=min(2.0, h / 4, w / 4))
    b, s = b[keep], np.asarray(scores, dtype=np.float32).reshape(-1)[keep]
    whole = whole_image_box(h, w)
    if top_n <= 1 or len(b) == 0:
        return whole
    kept = nms(torch.from_numpy(b), torch.from_numpy(s), iou).numpy()
    b = b[kept]
    # drop near-duplicates of the whole-image box, which is always included
    iw = b[:, 2] - b[:, 0]
    ih = b[:, 3] - b[:, 1]
    b = b[(iw * ih) < iou * h * w]
    return np.concatenate([whole, b[: top_n - 1]]).astype(np.float32)
