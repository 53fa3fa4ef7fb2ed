"""generator → NMS + top-N (whole image first) → cache; and padding to a batchable (B, R, 4) tensor."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import InvalidInputError
from ..utils.progress import tqdm
from .boxes import select_top
from .cache import ProposalCache, image_key


def propose(image: np.ndarray, generator, top_n: int = 32, iou: float = 0.7,
            cache: ProposalCache | None = None) -> np.ndarray:
    """Up to ``top_n`` boxes (x1, y1, x2, y2) in pixels of ``image``; the first is the whole image."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InvalidInputError(f"propose needs an RGB image array (H, W, 3), got shape {getattr(image, 'shape', None)}")
    if top_n < 1:
        raise InvalidInputError(f"top_n must be ≥ 1, got {top_n}")
    key = image_key(image) if cache is not None else None
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    boxes, scores = generator(image)
    out = select_top(boxes, scores, image.shape[0], image.shape[1], top_n, iou)
    if cache is not None:
        cache.put(key, out)
    return out


def propose_batch(images: Sequence[np.ndarray], generator, top_n: int = 32, iou: float = 0.7,
                  use_cache: bool = True, progress: bool = True) -> list[np.ndarray]:
    """Proposals for many images. A content-independent generator (grid) runs once per image size."""
    cache = ProposalCache(f"{generator.key}-n{top_n}-iou{iou}") if use_cache else None
    if hasattr(generator, "boxes"):
        shared: dict[tuple, np.ndarray] = {}
        out = []
        for img in images:
            hw = img.shape[:2]
            if hw not in shared:
                shared[hw] = propose(img, generator, top_n, iou)
            out.append(shared[hw])
        return out
    return [propose(img, generator, top_n, iou, cache)
            for img in tqdm(images, desc=f"proposals ({generator.key})", disable=not progress, leave=False)]


def pad_proposals(proposals: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length per-image boxes → (B, R, 4) float tensor and a (B, R) validity mask (padding repeats
    the whole-image box and is masked out of every pooling)."""
    r = max(len(p) for p in proposals)
    boxes = torch.zeros(len(proposals), r, 4)
    mask = torch.zeros(len(proposals), r, dtype=torch.bool)
    for i, p in enumerate(proposals):
        t = torch.as_tensor(np.asarray(p, dtype=np.float32))
        boxes[i, : len(t)] = t
        boxes[i, len(t):] = t[0]
        mask[i, : len(t)] = True
    return boxes, mask
