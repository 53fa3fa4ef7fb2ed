"""IAH's former entry points, kept for callers (benchmarks, the IAH CLI): thin wrappers over the shared
engine (``train.train`` with ``method="iah"``) and ``deephash.methods``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ..data import HashDataset
from ..methods import encode, load_trained
from ..methods.iah import IAHOptions, config_from_legacy
from .config import TrainConfig
from .trainer import train


@dataclass
class IAHConfig:
    """The former IAH settings; ``to_train_config`` maps them onto TrainConfig (backbone → model)."""
    backbone: str = "dsh"
    weights: str | None = None
    bits: int = 32
    image_size: int = 64
    levels: list = field(default_factory=lambda: [1, 2])
    hidden: int = 256
    pooling: str = "align"
    temperature: float = 1.0
    proposals: str = "grid"
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
    graded_category: bool = False
    mirror: bool = True
    frozen_backbone: bool = False
    seed: int = 0
    threads: int = 0
    out: str = "runs/iah"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(config_from_legacy(self.to_dict()))

    def validate(self) -> "IAHConfig":
        self.to_train_config().validate()
        return self


@dataclass
class IAHTrainResult:
    model: nn.Module
    checkpoint: Path
    history: list
    seconds: float


def train_iah(cfg: IAHConfig | TrainConfig, dataset: HashDataset, progress: bool = True) -> IAHTrainResult:
    tc = cfg.to_train_config() if isinstance(cfg, IAHConfig) else cfg
    res = train(tc, dataset, progress=progress)
    return IAHTrainResult(res.model, res.checkpoint, res.history, res.seconds)


def load_iah(path) -> tuple[nn.Module, dict]:
    """The model and a checkpoint summary: ``config`` (a TrainConfig dict) and ``class_names``."""
    t = load_trained(path)
    return t.model, {"config": t.config.to_dict(), "class_names": t.class_names, "method": t.method}


@dataclass
class IAHCodes:
    semantic: np.ndarray   # (N, bits/8) packed
    category: np.ndarray   # (N, C, bits/8) packed
    probs: np.ndarray      # (N, C) image-level class probabilities
    boxes: np.ndarray      # (N, C, 4) per category, the best proposal, normalised to [0, 1] (x1, y1, x2, y2)


def _as_train_config(cfg: IAHConfig | TrainConfig | dict) -> TrainConfig:
    if isinstance(cfg, IAHConfig):
        return cfg.to_train_config()
    if isinstance(cfg, dict):
        legacy = "backbone" in cfg or set(cfg) & set(IAHOptions.__dataclass_fields__)
        return TrainConfig.from_dict(config_from_legacy(cfg) if legacy else cfg)
    return cfg


def encode_iah(model: nn.Module, cfg: IAHConfig | TrainConfig | dict, dataset: HashDataset, batch_size: int = 128,
               progress: bool = True) -> IAHCodes:
    e = encode((model, _as_train_config(cfg)), dataset, batch_size=batch_size, progress=progress)
    return IAHCodes(e.codes, e.category, e.probs, e.boxes)
