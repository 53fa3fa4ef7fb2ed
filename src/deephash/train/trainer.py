"""DSH training: batches sliced from an in-memory uint8 array, batched augmentation,
an iteration-based LR schedule, and an atomic checkpoint every epoch that resumes exactly."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import ArrayDataset, HashDataset
from ..data.base import resize_batch
from ..data.samplers import balanced_batches, epoch_batches
from ..errors import DeephashError
from ..losses import DSHLoss
from ..miners import AllPairsMiner
from ..models import HashingModel, create_model, load_matching
from .augment import random_crop, random_mirror, to_float
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

CKPT_FORMAT = "deephash-dsh/1"


def set_threads(n: int) -> None:
    """Use all cores unless told otherwise (``threads`` = 0)."""
    import os

    torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))


def make_optimizer(model: HashingModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.parameter_groups(cfg.lr, cfg.weight_decay, cfg.bias_lr_mult, cfg.hash_lr_mult)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base LR at a given iteration (milestones are fractions of the run)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = step / max(1, total)
    if cfg.schedule == "step":
        return cfg.gamma ** sum(t >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":
        return min(1.0, t / 0.15) if t < 0.15 else 0.5 * (1 + math.cos(math.pi * (t - 0.15) / 0.85))
    return 1.0


@dataclass
class TrainResult:
    model: HashingModel
    checkpoint: Path
    history: list = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    feature_seconds: float = 0.0  # of ``seconds``: computing (or reading) a frozen backbone's features


class Trainer:
    def __init__(self, cfg: TrainConfig, train_set: HashDataset, progress: bool = True):
        self.cfg = cfg.validate()
        self.progress = progress
        data = train_set.as_arrays() if not isinstance(train_set, ArrayDataset) else train_set
        if data.image_size != (cfg.image_size, cfg.image_size) and not cfg.frozen_backbone:
            data = _resize_arrays(data, cfg.image_size)  # a frozen backbone's features are resized per batch, once
        self.data = data
        self.images = torch.from_numpy(data.images)
        self.labels = torch.from_numpy(data.labels.astype(np.float32))
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run's identity
        self.model = create_model(cfg.model, cfg.bits, cfg.image_size, weights=cfg.weights, **cfg.model_kwargs)
        if cfg.frozen_backbone:
            self.model.freeze_backbone()
        self.features: torch.Tensor | None = None  # (views, N, D) when the backbone is frozen
        if cfg.channels_last:
            self.model.use_channels_last()
        if self._dataset_normalisation():
            mean = data.images.reshape(-1, 3).mean(0) / 255.0
            self.model.set_normalization(mean, self.model.std)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.loss = DSHLoss(cfg.bits, cfg.margin, cfg.alpha)
        self.miner = AllPairsMiner()
        self.optimizer = make_optimizer(self.model, cfg)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]  # before any schedule or resume
        self.steps_per_epoch = len(self._batches(0))
        self.total_steps = cfg.iterations or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.out = Path(cfg.out)
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []

    def _dataset_normalisation(self) -> bool:
        return self.cfg.normalize == "dataset" or (self.cfg.normalize == "auto" and self.cfg.model == "dsh")

    def _init_from(self, path: str) -> None:
        """Start from another checkpoint's backbone (e.g. the 12-bit model for longer codes); the hash
        layer is copied only if its size matches."""
        load_matching(self.model, load_checkpoint(path)["model"], str(path))

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self.cfg.balanced:
            return balanced_batches(self.data.labels, self.cfg.batch_size, self.cfg.seed, epoch)
        return epoch_batches(len(self.data), self.cfg.batch_size, self.cfg.seed, epoch)

    def _payload(self) -> dict:
        return {
            "format": CKPT_FORMAT,
            "config": self.cfg.to_dict(),
            "bits": self.cfg.bits,
            "class_names": self.data.class_names,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != CKPT_FORMAT:
            raise DeephashError(f"{path}: not a DSH training checkpoint")
        if ckpt["bits"] != self.cfg.bits:
            raise DeephashError(f"{path} holds a {ckpt['bits']}-bit model but this run is configured for "
                                f"{self.cfg.bits} bits")
        conflicts = self.cfg.resume_conflicts(ckpt["config"])
        if conflicts:
            raise DeephashError(f"cannot resume {path} exactly with changed settings: " + "; ".join(conflicts))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step, self.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"])

    def _frozen_features(self) -> torch.Tensor:
        """The frozen backbone's features of every training image, and of its mirror image when the
        run mirrors: (views, N, D). Computed once per run (or read from the content-keyed cache)."""
        from ..features import backbone_features

        views = [False, True] if self.cfg.mirror else [False]
        return torch.stack([backbone_features(self.model, self.data.images, mirror=m, progress=self.progress)
                            for m in views])

    def _inputs(self, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        """A batch as the model's trainable part takes it: augmented images, or stored features of a
        random view (the original or its mirror) per image when the backbone is frozen."""
        if self.features is None:
            return self._augment(idx, gen)
        view = torch.randint(0, len(self.features), (len(idx),), generator=gen)
        return self.features[view, torch.from_numpy(idx)]

    def _augment(self, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        x = to_float(self.images[torch.from_numpy(idx)])
        if self.cfg.crop_pad:
            x = random_crop(x, self.cfg.crop_pad, gen)
        if self.cfg.mirror:
            x = random_mirror(x, gen)
        return x

    def fit(self) -> TrainResult:
        set_threads(self.cfg.threads)
        self.out.mkdir(parents=True, exist_ok=True)
        base_lrs = self.base_lrs
        start = time.perf_counter()
        seen = 0
        if self.cfg.frozen_backbone and self.features is None:
            self.features = self._frozen_features()
        feature_seconds = time.perf_counter() - start
        forward = self.model.head if self.features is not None else self.model
        self.model.train()
        while self.epoch < self.epochs and self.step < self.total_steps:
            gen = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch)
            batches = self._batches(self.epoch)
            bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not self.progress, leave=False)
            total_loss, count = 0.0, 0
            for idx in bar:
                if self.step >= self.total_steps:
                    break
                f = lr_factor(self.cfg, self.step, self.total_steps)
                for g, lr in zip(self.optimizer.param_groups, base_lrs):
                    g["lr"] = lr * f
                x = self._inputs(idx, gen)
                y = self.labels[torch.from_numpy(idx)]
                out = forward(x)
                loss = self.loss(out, self.miner(y))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                seen += len(idx)
                total_loss += loss.item()
                count += 1
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{base_lrs[0] * f:.2g}")
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "step": self.step, "loss": total_loss / max(1, count),
                                 "seconds": time.perf_counter() - start})
            save_checkpoint(self.out / "last.ckpt", self._payload())
        seconds = time.perf_counter() - start
        self.model.eval()
        return TrainResult(self.model, self.out / "last.ckpt", self.history, seconds, seen / max(seconds, 1e-9),
                           feature_seconds)


def _resize_arrays(data: ArrayDataset, size: int) -> ArrayDataset:
    x = resize_batch(to_float(torch.from_numpy(data.images)), (size, size))
    images = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return ArrayDataset(images, data.labels, data.class_names, data.paths, data.name)


def train(cfg: TrainConfig, train_set: HashDataset, resume: str | Path | None = None,
          progress: bool = True) -> TrainResult:
    trainer = Trainer(cfg, train_set, progress=progress)
    if resume:
        trainer.resume(resume)
    return trainer.fit()
