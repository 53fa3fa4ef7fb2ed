"""GreedyHash (Su et al., NeurIPS 2018): the codes are sign(h) in the forward pass and the gradient passes
straight through (∂b/∂h = 1); a classifier on b gives the supervised loss and a cubic penalty keeps h near ±1."""

from __future__ import annotations

import torch
from torch import nn

from ..miners import BaseMiner, ItemsMiner
from ..models.activations import SignSTE
from .base import BaseLoss


class GreedyHashLoss(BaseLoss):
    """L = CE(W·sign(h) + c, y) + α · mean over elements of | |h| − 1 |³, sign taken with a straight-through
    gradient (``SignSTE``; sign(0) = +1 as in the codes). The classifier (``bits`` → classes) is trained with
    the network; multi-label rows are read as the normalised target distribution y/Σy (one-hot: plain CE).
    Tuples: (positions, label rows) from ``ItemsMiner``."""

    def __init__(self, classifier: nn.Linear, alpha: float = 0.1, miner: BaseMiner | None = None):
        super().__init__(miner or ItemsMiner())
        self.classifier = classifier
        self.alpha = alpha
        self.sign = SignSTE()

    def compute(self, h: torch.Tensor, items: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        idx, labels = items
        h = h[idx]
        target = labels.to(h.dtype)
        target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
        logits = self.classifier(self.sign(h))
        ce = -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()
        penalty = (h.abs() - 1).abs().pow(3).mean()
        return ce + self.alpha * penalty
