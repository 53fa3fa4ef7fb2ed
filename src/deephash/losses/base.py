"""The one loss interface (pytorch-metric-learning style): ``loss(embeddings, labels, tuples=None)``.

A loss scores index tuples over the batch's embeddings; when ``tuples`` is None its miner
(``miners.BaseMiner``, the loss's default unless one is given) mines them from ``labels``."""

from __future__ import annotations

import torch
from torch import nn

from ..miners import BaseMiner


class BaseLoss(nn.Module):
    def __init__(self, miner: BaseMiner):
        super().__init__()
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None,
                tuples: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        if tuples is None:
            tuples = self.miner(embeddings, labels)
        return self.compute(embeddings, tuples)

    def compute(self, embeddings: torch.Tensor, tuples: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError
