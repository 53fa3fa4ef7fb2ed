"""DPSH (Li, Wang & Kang, IJCAI 2016): the negative log-likelihood of the pairwise labels under
p(s_ij = 1 | u_i, u_j) = σ(θ_ij), θ_ij = ½ u_iᵀu_j, plus a quantization term pulling u toward sign(u)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..miners import AllPairsMiner, BaseMiner
from .base import BaseLoss


class DPSHLoss(BaseLoss):
    """L = mean over pairs of [log(1 + e^θ) − s·θ] + η · mean over elements of (u − sign(u))²,
    θ = ½ u_iᵀu_j, s = 1 for a similar pair; tuples are (i, j, similar) (default: every pair of the batch).

    Both terms are means (DeepHash-pytorch's normalisation, where η = 0.1); the paper writes sums, which
    only rescales η. log(1 + e^θ) is computed as softplus(θ), which does not overflow for large θ."""

    def __init__(self, bits: int, eta: float = 0.1, miner: BaseMiner | None = None):
        super().__init__(miner or AllPairsMiner())
        self.bits = bits
        self.eta = eta

    def compute(self, u: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        i, j, sim = pairs
        quant = (u - u.detach().sign()).pow(2).mean()
        if len(i) == 0:
            return self.eta * quant
        theta = 0.5 * (u[i] * u[j]).sum(1)
        likelihood = (F.softplus(theta) - sim.to(u.dtype) * theta).mean()
        return likelihood + self.eta * quant
