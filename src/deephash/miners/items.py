"""Per-item "tuples" for losses that score each embedding against its own label (classification heads,
hash centres) rather than against other items: (positions, label rows)."""

from __future__ import annotations

import torch

from .base import BaseMiner


class ItemsMiner(BaseMiner):
    """Every item of the batch once: (arange(n), labels) — labels are the (n, C) multi-hot rows."""

    def mine(self, embeddings, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.arange(labels.shape[0], device=labels.device), labels
