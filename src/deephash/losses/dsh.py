"""The DSH loss (Liu et al., CVPR 2016) over pairs; by default every pair of the batch (``AllPairsMiner``)."""

from __future__ import annotations

import torch

from ..miners import AllPairsMiner, BaseMiner
from .base import BaseLoss


class DSHLoss(BaseLoss):
    """L = mean over pairs of w·[s·D + (1−s)·max(m − D, 0)] + α · mean_i ‖|b_i| − 1‖₁,
    with D = ‖b_i − b_j‖² and s = 1 for a similar pair; tuples are (i, j, similar).

    ``pair_weight`` w = ¼ by default, which is the authors' released layer: the paper's
    ½-weighted pair term (½·D, ½·max(m − D, 0)) summed over pairs i<j and divided by
    N(N−1), i.e. ½ · Σ_{i<j} / (2 · N(N−1)/2) = ¼ × the mean over the N(N−1)/2 pairs.
    The weight matters only relative to α. ``margin`` defaults to 2·bits (m = 2k).
    """

    def __init__(self, bits: int, margin: float | None = None, alpha: float = 0.01, pair_weight: float = 0.25,
                 miner: BaseMiner | None = None):
        super().__init__(miner or AllPairsMiner())
        self.bits = bits
        self.margin = 2.0 * bits if margin is None else float(margin)
        self.alpha = alpha
        self.pair_weight = pair_weight

    def compute(self, outputs: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        i, j, sim = pairs
        d = (outputs[i] - outputs[j]).pow(2).sum(dim=1)
        sim = sim.to(outputs.dtype)
        pair_terms = sim * d + (1 - sim) * torch.clamp(self.margin - d, min=0)
        pair_loss = self.pair_weight * pair_terms.mean() if len(d) else outputs.sum() * 0
        reg = (outputs.abs() - 1).abs().sum(dim=1).mean()
        return pair_loss + self.alpha * reg
