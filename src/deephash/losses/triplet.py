"""Triplet ranking loss on relaxed codes; triplets (anchor, positive, negative) come from a miner
(by default ``TripletMiner``: every triplet ranked by shared labels)."""

from __future__ import annotations

import torch

from ..miners import BaseMiner, TripletMiner
from .base import BaseLoss


class TripletRankingLoss(BaseLoss):
    """mean over triplets of max(0, margin + ‖h_q − h_q+‖² − ‖h_q − h_q−‖²), plus ``alpha`` · mean ‖|h| − 1‖₁ / k
    pulling relaxed codes toward ±1. ``margin`` defaults to bits/2 (squared distance; a Hamming gap of bits/8
    once codes are binary, as ‖b − b'‖² = 4·Hamming)."""

    def __init__(self, bits: int, margin: float | None = None, alpha: float = 0.0, miner: BaseMiner | None = None):
        super().__init__(miner or TripletMiner())
        self.bits = bits
        self.margin = bits / 2 if margin is None else float(margin)
        self.alpha = alpha

    def compute(self, codes: torch.Tensor, triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        a, p, n = triplets
        reg = self.alpha * (codes.abs() - 1).abs().mean() if self.alpha else codes.sum() * 0
        if len(a) == 0:
            return reg
        d_ap = (codes[a] - codes[p]).pow(2).sum(1)
        d_an = (codes[a] - codes[n]).pow(2).sum(1)
        return torch.clamp(self.margin + d_ap - d_an, min=0).mean() + reg
