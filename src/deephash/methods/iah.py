"""IAH, Instance-Aware Hashing (Lai et al., TIP 2016): images + proposals → joint label (BCE on
cross-hypothesis max-pooled probabilities) and triplet ranking objectives on semantic and category-aware
relaxed codes.

Objective = label_weight · BCE(image probabilities, labels)
          + (semantic_weight · L_triplet(semantic codes) + category_weight · L_triplet(category codes)) / bits.
The triplet terms are divided by the code length so one set of weights suits every length (the default
margin grows with it). ``TrainConfig.model`` names the backbone (a feature-map backbone: ``models.list_backbones("map")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..losses import TripletRankingLoss
from ..miners import CategoryTripletMiner, TripletMiner
from ..runs.method import Encoded, Method, register_method
from ..utils.progress import tqdm

PROPOSALS = ("grid", "selective", "gt")
LEGACY_KEYS = {"backbone": "model"}  # IAHConfig (checkpoint format deephash-iah/1) → TrainConfig


@dataclass
class IAHOptions:
    levels: list = field(default_factory=lambda: [1, 2])
    hidden: int = 256
    pooling: str = "align"
    temperature: float = 1.0
    proposals: str = "grid"          # grid | selective | gt (the dataset's boxes)
    top_n: int = 24
    iou: float = 0.7
    label_weight: float = 1.0
    semantic_weight: float = 1.0
    category_weight: float = 1.0
    max_triplets: int = 20000
    graded_category: bool = False    # also rank holders of a category by shared labels (CategoryTripletMiner)


def dataset_proposals(options: IAHOptions | dict, data, progress: bool = True) -> list[np.ndarray]:
    """Proposals for every image of ``data`` (already at the model's input size), per the options."""
    from ..proposals import boxes_from_labels, make_generator, propose_batch, select_top

    o = options if isinstance(options, dict) else options.__dict__
    h, w = data.image_size
    if o["proposals"] == "gt":
        if not hasattr(data, "boxes"):
            raise InvalidInputError("proposals 'gt' needs a dataset with boxes (YOLO, VOC, COCO or multi-object)")
        return [select_top(*boxes_from_labels(b, h, w), h, w, o["top_n"], 1.0) for b in data.boxes]
    images = [data.images[i] for i in range(len(data))]
    return propose_batch(images, make_generator(o["proposals"]), o["top_n"], o["iou"], progress=progress)


@register_method
class IAH(Method):
    name = "iah"
    Options = IAHOptions
    defaults = dict(bits=32, image_size=64, epochs=10, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=1e-4,
                    schedule="cosine", alpha=0.0, out="runs/iah")
    encode_batch_size = 128
    gives_features = True

    def __init__(self, cfg):
        super().__init__(cfg)
        o, seed = self.options, cfg.seed
        self.semantic_loss = TripletRankingLoss(cfg.bits, cfg.margin, cfg.alpha, TripletMiner(o.max_triplets, seed))
        self.category_loss = TripletRankingLoss(cfg.bits, cfg.margin, cfg.alpha,
                                                CategoryTripletMiner(o.max_triplets, seed, graded=o.graded_category))

    @classmethod
    def validate_config(cls, cfg) -> None:
        o = cfg.method_options
        if o["proposals"] not in PROPOSALS:
            raise InvalidInputError(f"proposals must be grid, selective or gt, got {o['proposals']!r}")
        for name in ("top_n", "hidden"):
            if o[name] < 1:
                raise InvalidInputError(f"{name} must be ≥ 1, got {o[name]}")
        if cfg.batch_size < 3:
            raise InvalidInputError("batch_size must be ≥ 3 (triplets are formed inside a batch)")
        if cfg.crop_pad:
            raise InvalidInputError("method iah does not take random crops (crop_pad must be 0): proposals are fixed")
        if cfg.channels_last:
            raise InvalidInputError("method iah has no channels_last mode")
        if cfg.bf16:
            raise InvalidInputError("method iah has no bf16 mode (its outputs would reach the loss in bfloat16)")
        if cfg.model_kwargs:
            raise InvalidInputError("method iah takes no model_kwargs; its head width is the option hidden "
                                "(method_options: {hidden: 256}, or -o hidden=256)")

    @classmethod
    def legacy_config(cls, saved: dict) -> dict:
        """An old IAHConfig dict (format ``deephash-iah/1``): options go to ``method_options``, ``backbone`` is
        ``model``."""
        options = set(IAHOptions.__dataclass_fields__)
        out = {"method": "iah", "method_options": {k: v for k, v in saved.items() if k in options}}
        out.update({LEGACY_KEYS.get(k, k): v for k, v in saved.items() if k not in options})
        return out

    def prepare(self, data, progress: bool) -> None:
        from ..proposals import pad_proposals

        if data.labels.sum() == 0:
            raise InvalidInputError("the training set has no labels: IAH learns from image labels")
        self.width = data.image_size[1]
        self.boxes, self.mask = pad_proposals(dataset_proposals(self.options, data, progress))

    def build_model(self, num_classes: int):
        from ..models import create_model

        c, o = self.cfg, self.options
        model = create_model("iah", c.bits, c.image_size, num_classes=num_classes, backbone=c.model, weights=c.weights,
                             levels=tuple(o.levels), hidden=o.hidden, pooling=o.pooling, temperature=o.temperature)
        if c.frozen_backbone:
            model.freeze_backbone()
        return model

    def frozen_store(self, model, images_u8: np.ndarray, progress: bool) -> torch.Tensor:
        from ..features import feature_maps

        return feature_maps(model, images_u8, self.cfg.mirror, progress)

    def forward(self, model, x, idx, flipped, stored: bool):
        from ..data.augment import flip_boxes

        b = self.boxes[idx].clone()
        if flipped.any():
            b[flipped] = flip_boxes(b[flipped], self.width)
        b, mask = b.to(x.device), self.mask[idx].to(x.device)
        return model.heads(x, b, mask) if stored else model(x, b, mask)

    def objective(self, o, labels):
        w, bits = self.options, self.cfg.bits
        bce = F.binary_cross_entropy_with_logits(o.image_logits, labels)
        sem = self.semantic_loss(o.semantic, labels)
        cat = self.category_loss(o.category_codes.reshape(-1, bits), labels)
        loss = w.label_weight * bce + (w.semantic_weight * sem + w.category_weight * cat) / bits
        return {"loss": loss, "bce": bce, "semantic": sem, "category": cat}

    def lr_factor(self, step: int, total: int) -> float:
        # IAH's cosine rounds as π·step/total (the shared schedule rounds π·(step/total)): kept so runs reproduce
        if self.cfg.schedule == "cosine" and not self.cfg.warmup_steps:
            return 0.5 * (1 + math.cos(math.pi * step / total))
        return super().lr_factor(step, total)

    def state(self) -> dict:
        return {"semantic_miner": self.semantic_loss.miner.rng_state(),
                "category_miner": self.category_loss.miner.rng_state()}

    def load_state(self, state: dict) -> None:
        self.semantic_loss.miner.set_rng_state(state["semantic_miner"])
        self.category_loss.miner.set_rng_state(state["category_miner"])

    @torch.inference_mode()
    def encode(self, model, dataset, batch_size: int, progress: bool, workers: int = 0,
               features: bool = False, rows=None) -> Encoded:
        """Semantic and category-aware codes, probabilities and per-category boxes of every image (or of
        ``rows``); with ``features`` also the whole image's spatially averaged feature map (the conv pass all
        codes share)."""
        from ..data.augment import to_float
        from ..proposals import pad_proposals

        lo, hi = rows or (0, len(dataset))
        if hi <= lo:
            return Encoded(np.empty((0, -(-model.bits // 8)), np.uint8), np.empty(0, np.int64), bits=model.bits)
        data = self.arrays(dataset if rows is None else dataset.subset(np.arange(lo, hi)), progress)
        props = dataset_proposals(self.options, data, progress)
        images = torch.from_numpy(data.images)
        parts = []
        for s in tqdm(range(0, len(data), batch_size), desc="iah encode", disable=not progress, leave=False):
            b, m = pad_proposals(props[s:s + batch_size])
            parts.append(model.encode(to_float(images[s:s + batch_size]), b, m))
        h, w = data.image_size
        scale = np.array([w, h, w, h], np.float32)
        return Encoded(np.concatenate([p["semantic"] for p in parts]), np.arange(lo, lo + len(data)), [],
                       np.concatenate([p["category"] for p in parts]), np.concatenate([p["probs"] for p in parts]),
                       np.concatenate([p["boxes"] for p in parts]) / scale, model.bits,
                       np.concatenate([p["features"] for p in parts]) if features else None)

