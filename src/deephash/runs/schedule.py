"""The LR schedule: a function of the run's config alone, below both the engine and the methods (a method may
replace it: ``Method.lr_factor``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainConfig


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
