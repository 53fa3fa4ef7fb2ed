"""HashNet (Cao et al., ICCV 2017): a weighted pairwise likelihood on tanh(β·z) codes, where the engine raises
β during training (continuation; ``methods.hashnet``) so the codes approach sign(z)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..miners import AllPairsMiner, BaseMiner
from .base import BaseLoss


class HashNetLoss(BaseLoss):
    """L = Σ_p w_p·[log(1 + e^θ_p) − s_p·θ_p] / Σ_p w_p with θ = α·h_iᵀh_j (the adaptive sigmoid; the
    authors set α = 10/bits) and w_p = |S|/|S₁| for similar pairs, |S|/|S₀| for dissimilar ones (S: the
    batch's pairs, S₁/S₀ its similar/dissimilar ones): the two kinds weigh equally however rare the similar
    pairs are (1 in 10 under CIFAR-10). ``weighted=False`` is the unweighted mean. Tuples: (i, j, similar)."""

    def __init__(self, bits: int, alpha: float | None = None, weighted: bool = True, miner: BaseMiner | None = None):
        super().__init__(miner or AllPairsMiner())
        self.bits = bits
        self.alpha = 10.0 / bits if alpha is None else float(alpha)
        self.weighted = weighted

    def compute(self, h: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        i, j, sim = pairs
        if len(i) == 0:
            return h.sum() * 0
        s = sim.to(h.dtype)
        theta = self.alpha * (h[i] * h[j]).sum(1)
        terms = F.softplus(theta) - s * theta
        if not self.weighted:
            return terms.mean()
        n, n1 = float(len(s)), float(s.sum())
        n0 = n - n1
        w = s * (n / max(n1, 1.0)) + (1 - s) * (n / max(n0, 1.0))
        return (w * terms).sum() / w.sum()
