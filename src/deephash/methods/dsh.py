"""DSH (Liu et al., CVPR 2016): a hashing network trained with the pairwise DSH loss over every pair of
the batch. Its settings are TrainConfig's own (margin, alpha, bias/hash LR multipliers, normalize)."""

from __future__ import annotations

from ..losses import DSHLoss
from ..runs.method import register_method
from .pooled import PAPER_RECIPE, PooledMethod


@register_method
class DSH(PooledMethod):
    name = "dsh"
    defaults = {**PAPER_RECIPE, "out": "runs/dsh"}

    def make_loss(self, model, num_classes):
        cfg = self.cfg
        return DSHLoss(cfg.bits, cfg.margin, cfg.alpha)
