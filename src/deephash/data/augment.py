"""Batched augmentation on uint8 image tensors: whole batches at once, seeded, no per-item Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ArrayDataset, resize_batch


def to_float(batch_u8: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [0, 1]."""
    return batch_u8.permute(0, 3, 1, 2).float().div_(255.0)


def mirror_mask(x: torch.Tensor, gen: torch.Generator, total: int | None = None, start: int = 0) -> torch.Tensor:
    """Flip a random half of the batch in place; returns which items were flipped (for their boxes).
    ``x`` may be rows ``start`` on of a batch of ``total`` (one rank's share): the draw is the whole batch's,
    so a distributed step flips exactly what a single process would."""
    b = x.shape[0]
    flip = (torch.rand(b if total is None else total, generator=gen) < 0.5)[start:start + b]
    if flip.any():
        x[flip] = x[flip].flip(-1)
    return flip


def flip_boxes(b: torch.Tensor, width: int) -> torch.Tensor:
    """Pixel boxes (..., 4) x1, y1, x2, y2 of a horizontally mirrored image of the given width."""
    return torch.stack([width - b[..., 2], b[..., 1], width - b[..., 0], b[..., 3]], -1)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator, total: int | None = None,
                start: int = 0) -> torch.Tensor:
    """Reflect-pad by ``pad`` and take a random same-size crop per image. ``x`` may be rows ``start`` on of a
    batch of ``total`` (one rank's share): the offsets drawn are the whole batch's."""
    b, _, h, w = x.shape
    total = b if total is None else total
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (total,), generator=gen)[start:start + b]
    ox = torch.randint(0, 2 * pad + 1, (total,), generator=gen)[start:start + b]
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    bidx = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2).contiguous()


def resize_arrays(data: ArrayDataset, size: int) -> ArrayDataset:
    """The set resized once to size×size (boxes, being normalised, carry over)."""
    x = resize_batch(to_float(torch.from_numpy(data.images)), (size, size))
    images = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    if hasattr(data, "boxes"):
        from .detection import BoxArrayDataset

        return BoxArrayDataset(images, data.labels, data.class_names, data.boxes, data.paths, data.name)
    return ArrayDataset(images, data.labels, data.class_names, data.paths, data.name)
