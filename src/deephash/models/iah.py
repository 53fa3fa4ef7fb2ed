"""Instance-Aware Hashing network (Lai et al., TIP 2016): one conv pass per image, spatial pyramid
pooling per proposal, a label-probability branch with cross-hypothesis max pooling, and a hash
branch whose per-proposal codes are grouped per category.

Shapes: images (B, 3, H, W) in [0, 1]; proposals (B, R, 4) pixel boxes with a (B, R) validity mask
(see ``proposals.pad_proposals``). Every proposal of the batch goes through ``roi_align`` in one
call as a (K, 5) tensor with its image index; no Python loop per image or proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

from ..codes import encode_outputs
from ..errors import InvalidInputError
from .freezing import FreezableBackbone
from .registry import MAP, build_backbone, image_size_pair, register_model

NEG = -1e4  # logit given to padded proposals: never the max, zero softmax weight


def spp_roi_features(fmap: torch.Tensor, rois: torch.Tensor, levels=(1, 2), stride: int = 4,
                     pooling: str = "align") -> torch.Tensor:
    """Spatial pyramid pooling inside each box: for each level l an l×l grid of bins (roi_align averages,
    roi_pool takes maxima), flattened and concatenated → (K, C·Σl²). ``rois`` is (K, 5): image index, x1, y1,
    x2, y2 in input pixels."""
    outs = []
    for level in levels:
        if pooling == "align":
            p = roi_align(fmap, rois, (level, level), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
        else:
            p = roi_pool(fmap, rois, (level, level), spatial_scale=1.0 / stride)
        outs.append(p.flatten(1))
    return torch.cat(outs, 1)


def cross_hypothesis_max(proposal_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HCP's cross-hypothesis max pooling: per class, the maximum over an image's proposals (B, R, C) → (B, C).
    Done on logits (sigmoid is monotone, so this is the max probability) for a stable BCE; the gradient
    reaches only the arg-max proposal of each class."""
    if mask is not None:
        proposal_logits = proposal_logits.masked_fill(~mask[..., None], NEG)
    return proposal_logits.max(dim=1).values


def category_pool(proposal_codes: torch.Tensor, proposal_logits: torch.Tensor, mask: torch.Tensor | None = None,
                  temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Group proposal codes (B, R, k) per category: weights = softmax over the image's proposals of the class-c
    logits / temperature, so the proposals most likely to show c dominate c's code. Returns the
    category-aware codes (B, C, k) and the weights (B, R, C)."""
    logits = proposal_logits / temperature
    if mask is not None:
        logits = logits.masked_fill(~mask[..., None], NEG)
    w = torch.softmax(logits, dim=1)
    return torch.einsum("brc,brk->bck", w, proposal_codes), w


def semantic_code(category_codes: torch.Tensor, image_probs: torch.Tensor) -> torch.Tensor:
    """One code per image: the category codes averaged with weights = the image-level probabilities
    (normalised), so the classes the image most likely contains dominate."""
    w = image_probs / image_probs.sum(1, keepdim=True).clamp_min(1e-6)
    return torch.einsum("bc,bck->bk", w, category_codes)


@dataclass
class IAHOutput:
    proposal_logits: torch.Tensor  # (B, R, C)
    image_logits: torch.Tensor     # (B, C), cross-hypothesis max of proposal_logits
    proposal_codes: torch.Tensor   # (B, R, k) in (-1, 1)
    category_codes: torch.Tensor   # (B, C, k)
    semantic: torch.Tensor         # (B, k)
    weights: torch.Tensor          # (B, R, C) proposal weights per category

    @property
    def image_probs(self) -> torch.Tensor:
        return torch.sigmoid(self.image_logits)


class IAHNet(FreezableBackbone):
    BACKBONE = "features"  # frozen, its maps are stored per image and only the proposal heads train

    def __init__(self, features: nn.Module, channels: int, stride: int, normalisation: dict, bits: int,
                 num_classes: int, image_size: tuple[int, int], levels=(1, 2), hidden: int = 256,
                 pooling: str = "align", temperature: float = 1.0):
        """``features`` maps normalised images to a (B, ``channels``, H/``stride``, W/``stride``) map; build one
        with ``create_model("iah", ...)``."""
        super().__init__()
        check_iah_options(num_classes, levels, pooling)
        self.features, self.stride = features, stride
        self.levels, self.pooling, self.temperature = tuple(int(v) for v in levels), pooling, float(temperature)
        self.bits, self.num_classes, self.image_size = bits, num_classes, tuple(image_size)
        spp_dim = channels * sum(v * v for v in self.levels)
        self.shared = nn.Sequential(nn.Linear(spp_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.classifier = nn.Linear(hidden, num_classes)
        # start every proposal at a low class probability (0.05): the max over many proposals would otherwise
        # begin near 1 for every class and spend the first epochs only pushing maxima down
        nn.init.constant_(self.classifier.bias, -math.log(19.0))
        self.hash = nn.Linear(hidden, bits)
        self.register_buffer("mean", torch.tensor(normalisation["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(normalisation["std"], dtype=torch.float32).view(1, 3, 1, 1))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The one conv pass over whole images (B, 3, H, W) in [0, 1]."""
        return self.features((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor | None = None) -> IAHOutput:
        return self.heads(self.feature_map(x), boxes, mask)

    def heads(self, fmap: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor | None = None) -> IAHOutput:
        """Everything after the conv pass: ROI/SPP pooling per proposal, the label and hash branches."""
        b, r = boxes.shape[:2]
        if mask is None:
            mask = torch.ones(b, r, dtype=torch.bool, device=boxes.device)
        batch_idx = torch.arange(b, device=boxes.device, dtype=boxes.dtype)[:, None].expand(b, r)
        rois = torch.cat([batch_idx[mask][:, None], boxes[mask]], 1)            # (K, 5), valid proposals only
        h = self.shared(spp_roi_features(fmap, rois, self.levels, self.stride, self.pooling))
        logits = h.new_full((b, r, self.num_classes), NEG)
        codes = h.new_zeros((b, r, self.bits))
        logits = logits.masked_scatter(mask[..., None].expand_as(logits), self.classifier(h))
        codes = codes.masked_scatter(mask[..., None].expand_as(codes), torch.tanh(self.hash(h)))
        image_logits = cross_hypothesis_max(logits, mask)
        cat_codes, weights = category_pool(codes, logits, mask, self.temperature)
        return IAHOutput(logits, image_logits, codes, cat_codes, semantic_code(cat_codes, torch.sigmoid(image_logits)),
                         weights)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """Packed semantic codes (B, bits/8), packed category codes (B, C, bits/8), image probabilities (B, C)
        and, per category, the box of the proposal with the highest class-c probability (B, C, 4), as numpy
        arrays whatever device the model is on (inputs are moved to it); also "features", the whole image's
        feature map averaged over space (B, channels) float16, from the same conv pass."""
        device = self.mean.device
        x, boxes = x.to(device), boxes.to(device)
        mask = None if mask is None else mask.to(device)
        was = self.training
        self.eval()
        try:
            fmap = self.feature_map(x)
            out = self.heads(fmap, boxes, mask)
        finally:
            self.train(was)
        b, c = out.image_logits.shape
        best = out.proposal_logits.argmax(1)                                    # (B, C)
        best_boxes = torch.gather(boxes, 1, best[..., None].expand(b, c, 4))
        return {"semantic": encode_outputs(out.semantic),
                "category": encode_outputs(out.category_codes.reshape(b * c, -1)).reshape(b, c, -1),
                "probs": out.image_probs.cpu().numpy(), "boxes": best_boxes.cpu().numpy(),
                "features": fmap.float().mean((2, 3)).cpu().numpy().astype(np.float16)}


def check_iah_options(num_classes: int, levels, pooling: str) -> None:
    if pooling not in ("align", "pool"):
        raise InvalidInputError(f"pooling must be 'align' or 'pool', got {pooling!r}")
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be ≥ 1, got {num_classes}")
    if not levels or any(int(v) < 1 for v in levels):
        raise InvalidInputError(f"pyramid levels must be positive integers, got {levels}")


@register_model("iah")
def _iah(bits: int, num_classes: int, backbone: str = "dsh", image_size: int | tuple[int, int] = 64,
         weights: str | Path | None = None, levels=(1, 2), hidden: int = 256, pooling: str = "align",
         temperature: float = 1.0, backbone_kwargs: dict | None = None) -> IAHNet:
    """An IAH network on a feature-map backbone (``registry.list_backbones("map")``); ``weights`` is a local
    state-dict file of the whole backbone network (e.g. a torchvision resnet18 checkpoint), loaded before it
    is cut down to its feature layers, or "imagenet" where installed (efficientnet_lite0)."""
    check_iah_options(num_classes, levels, pooling)
    features, channels, stride, norm = build_backbone(backbone, MAP, weights, **(backbone_kwargs or {}))
    return IAHNet(features, channels, stride, norm, bits, num_classes, image_size_pair(image_size), levels=levels,
                  hidden=hidden, pooling=pooling, temperature=temperature)
