"""IAH training and encoding: images + proposals → joint label (BCE on cross-hypothesis max-pooled
probabilities) and triplet ranking objectives on semantic and category-aware relaxed codes.

Objective = label_weight · BCE(image probabilities, labels)
          + (semantic_weight · L_triplet(semantic codes) + category_weight · L_triplet(category codes)) / bits.
The triplet terms are divided by the code length so one set of weights suits every length (the default
margin grows with it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import ArrayDataset, BoxArrayDataset, HashDataset
from ..data.samplers import epoch_batches
from ..errors import DeephashError
from ..losses import TripletRankingLoss
from ..miners import CategoryTripletMiner, TripletMiner
from ..models.iah import IAHNet, create_iah_model
from ..proposals import boxes_from_labels, make_generator, pad_proposals, propose_batch, select_top
from .augment import to_float
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import _resize_arrays, set_threads

CKPT_FORMAT = "deephash-iah/1"


@dataclass
class IAHConfig:
    backbone: str = "dsh"
    weights: str | None = None
    bits: int = 32
    image_size: int = 64
    levels: list = field(default_factory=lambda: [1, 2])
    hidden: int = 256
    pooling: str = "align"
    temperature: float = 1.0
    proposals: str = "grid"          # grid | selective | gt (the dataset's boxes)
    top_n: int = 24
    iou: float = 0.7
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    margin: float | None = None
    alpha: float = 0.0
    label_weight: float = 1.0
    semantic_weight: float = 1.0
    category_weight: float = 1.0
    max_triplets: int = 20000
    graded_category: bool = False     # also rank holders of a category by shared labels (see CategoryTripletMiner)
    mirror: bool = True
    frozen_backbone: bool = False     # feature maps computed once per image (and mirror); only the heads train
    seed: int = 0
    threads: int = 0
    out: str = "runs/iah"

    def validate(self) -> "IAHConfig":
        from ..codes import check_code_length

        check_code_length(self.bits)
        if self.proposals not in ("grid", "selective", "gt"):
            raise DeephashError(f"proposals must be grid, selective or gt, got {self.proposals!r}")
        for name in ("epochs", "image_size", "top_n", "hidden"):
            if getattr(self, name) < 1:
                raise DeephashError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_size < 3:
            raise DeephashError("batch_size must be ≥ 3 (triplets are formed inside a batch)")
        if self.lr <= 0:
            raise DeephashError(f"lr must be > 0, got {self.lr}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def dataset_proposals(cfg: IAHConfig | dict, data: ArrayDataset, progress: bool = True) -> list[np.ndarray]:
    """Proposals for every image of ``data`` (already at the model's input size), per the config."""
    c = cfg if isinstance(cfg, dict) else cfg.to_dict()
    h, w = data.image_size
    if c["proposals"] == "gt":
        if not hasattr(data, "boxes"):
            raise DeephashError("proposals 'gt' needs a dataset with boxes (YOLO, VOC, COCO or multi-object)")
        return [select_top(*boxes_from_labels(b, h, w), h, w, c["top_n"], 1.0) for b in data.boxes]
    images = [data.images[i] for i in range(len(data))]
    return propose_batch(images, make_generator(c["proposals"]), c["top_n"], c["iou"], progress=progress)


def as_model_arrays(dataset: HashDataset, size: int, progress: bool = True) -> ArrayDataset:
    data = dataset if isinstance(dataset, ArrayDataset) else dataset.as_arrays(progress=progress)
    if data.image_size != (size, size):
        resized = _resize_arrays(data, size)
        if hasattr(data, "boxes"):
            resized = BoxArrayDataset(resized.images, resized.labels, resized.class_names, data.boxes,
                                      resized.paths, resized.name)
        data = resized
    return data


def _model(cfg: IAHConfig, num_classes: int) -> IAHNet:
    return create_iah_model(cfg.backbone, cfg.bits, num_classes, cfg.image_size, weights=cfg.weights,
                            levels=tuple(cfg.levels), hidden=cfg.hidden, pooling=cfg.pooling,
                            temperature=cfg.temperature)


@dataclass
class IAHTrainResult:
    model: IAHNet
    checkpoint: Path
    history: list
    seconds: float


def _mirror(x: torch.Tensor, boxes: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    if flip.any():
        x[flip] = x[flip].flip(-1)
        boxes[flip] = _flip_boxes(boxes[flip], x.shape[-1])
    return x, boxes


def _flip_boxes(b: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([width - b[..., 2], b[..., 1], width - b[..., 0], b[..., 3]], -1)


@torch.inference_mode()
def _frozen_maps(model: IAHNet, images: torch.Tensor, mirror: bool, progress: bool, batch: int = 16) -> torch.Tensor:
    """The frozen backbone's feature maps of every image, and of its mirror image when training mirrors:
    (views, N, C, h, w). One conv pass per image for the whole run instead of one per epoch."""
    views = []
    for flip in ([False, True] if mirror else [False]):
        maps = []
        for s in tqdm(range(0, len(images), batch), desc="iah feature maps" + (" (mirrored)" if flip else ""),
                      disable=not progress, leave=False):
            x = to_float(images[s:s + batch])
            maps.append(model.feature_map(x.flip(-1) if flip else x))
        views.append(torch.cat(maps))
    return torch.stack(views)


def train_iah(cfg: IAHConfig, dataset: HashDataset, progress: bool = True) -> IAHTrainResult:
    cfg.validate()
    set_threads(cfg.threads)
    data = as_model_arrays(dataset, cfg.image_size, progress)
    if data.labels.sum() == 0:
        raise DeephashError("the training set has no labels: IAH learns from image labels")
    boxes, mask = pad_proposals(dataset_proposals(cfg, data, progress))
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels.astype(np.float32))
    torch.manual_seed(cfg.seed)
    model = _model(cfg, data.num_classes)
    maps = None
    start = time.perf_counter()
    if cfg.frozen_backbone:
        model.freeze_backbone()
        maps = _frozen_maps(model, images, cfg.mirror, progress)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    loss_fn = TripletRankingLoss(cfg.bits, cfg.margin, cfg.alpha)
    miner = TripletMiner(cfg.max_triplets, cfg.seed)
    cat_miner = CategoryTripletMiner(cfg.max_triplets, cfg.seed, graded=cfg.graded_category)
    steps = cfg.epochs * len(epoch_batches(len(data), cfg.batch_size, cfg.seed, 0))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    history, step = [], 0
    model.train()
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        sums = np.zeros(3)
        batches = epoch_batches(len(data), cfg.batch_size, cfg.seed, epoch)
        bar = tqdm(batches, desc=f"iah epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for idx in bar:
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            t = torch.from_numpy(idx)
            y = labels[t]
            if maps is not None:  # a stored feature map per image: the original, or its mirror with flipped boxes
                view = torch.randint(0, len(maps), (len(idx),), generator=gen)
                b = boxes[t].clone()
                b[view == 1] = _flip_boxes(b[view == 1], data.image_size[1])
                o = model.heads(maps[view, t], b, mask[t])
            else:
                x, b = to_float(images[t]), boxes[t].clone()
                if cfg.mirror:
                    x, b = _mirror(x, b, gen)
                o = model(x, b, mask[t])
            l_label = F.binary_cross_entropy_with_logits(o.image_logits, y)
            l_sem = loss_fn(o.semantic, miner(y))
            l_cat = loss_fn(o.category_codes.reshape(-1, cfg.bits), cat_miner(y))
            loss = cfg.label_weight * l_label + (cfg.semantic_weight * l_sem + cfg.category_weight * l_cat) / cfg.bits
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            sums += [l_label.item(), l_sem.item(), l_cat.item()]
            bar.set_postfix(bce=f"{l_label.item():.3f}", sem=f"{l_sem.item():.2f}", cat=f"{l_cat.item():.2f}")
        n = max(1, len(batches))
        history.append({"epoch": epoch + 1, "bce": sums[0] / n, "semantic": sums[1] / n, "category": sums[2] / n,
                        "seconds": time.perf_counter() - start})
        save_checkpoint(out / "last.ckpt", {"format": CKPT_FORMAT, "config": cfg.to_dict(),
                                            "class_names": data.class_names, "model": model.state_dict(),
                                            "epoch": epoch + 1, "history": history})
    model.eval()
    return IAHTrainResult(model, out / "last.ckpt", history, time.perf_counter() - start)


def load_iah(path) -> tuple[IAHNet, dict]:
    """The model and checkpoint payload (config, class names) from an IAH checkpoint."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != CKPT_FORMAT:
        raise DeephashError(f"{path}: not an IAH checkpoint (train one with deephash iah-train)")
    cfg = IAHConfig(**ckpt["config"])
    model = _model(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


@dataclass
class IAHCodes:
    semantic: np.ndarray   # (N, bits/8) packed
    category: np.ndarray   # (N, C, bits/8) packed
    probs: np.ndarray      # (N, C) image-level class probabilities
    boxes: np.ndarray      # (N, C, 4) per category, the best proposal, normalised to [0, 1] (x1, y1, x2, y2)


@torch.inference_mode()
def encode_iah(model: IAHNet, cfg: dict, dataset: HashDataset, batch_size: int = 128,
               progress: bool = True) -> IAHCodes:
    data = as_model_arrays(dataset, cfg["image_size"], progress)
    props = dataset_proposals(cfg, data, progress)
    images = torch.from_numpy(data.images)
    parts = []
    for s in tqdm(range(0, len(data), batch_size), desc="iah encode", disable=not progress, leave=False):
        b, m = pad_proposals(props[s:s + batch_size])
        parts.append(model.encode(to_float(images[s:s + batch_size]), b, m))
    h, w = data.image_size
    scale = np.array([w, h, w, h], np.float32)
    return IAHCodes(np.concatenate([p["semantic"] for p in parts]), np.concatenate([p["category"] for p in parts]),
                    np.concatenate([p["probs"] for p in parts]), np.concatenate([p["boxes"] for p in parts]) / scale)
