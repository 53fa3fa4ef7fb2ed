"""Pair mining, separate from the losses (as in pytorch-metric-learning): a miner turns a
batch's labels into index pairs with a similarity flag, a loss scores the pairs."""

from __future__ import annotations

import torch

from .base import BaseMiner


def similarity_matrix(labels_a: torch.Tensor, labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Similar ⇔ the multi-hot label vectors share at least one class (dot product > 0)."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a.float() @ labels_b.float().T) > 0


class AllPairsMiner(BaseMiner):
    """Every i<j pair of the mini-batch — the DSH paper's online pair generation: (i, j, similar)."""

    def mine(self, embeddings, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = labels.shape[0]
        i, j = torch.triu_indices(n, n, offset=1, device=labels.device)
        sim = similarity_matrix(labels)[i, j]
        return i, j, sim
