"""The one miner interface: ``miner(embeddings, labels) -> tuples`` of index tensors.

Embeddings are passed so a miner may choose by distance (hard or semi-hard negatives); the miners here
use labels only. A miner that draws random numbers owns a seeded generator and exposes its state, so a
resumed run continues the same draws."""

from __future__ import annotations

import torch

Tuples = tuple[torch.Tensor, ...]


class BaseMiner:
    def __call__(self, embeddings: torch.Tensor | None, labels: torch.Tensor) -> Tuples:
        return self.mine(embeddings, labels)

    def mine(self, embeddings: torch.Tensor | None, labels: torch.Tensor) -> Tuples:
        raise NotImplementedError

    def rng_state(self) -> dict:
        return {}

    def set_rng_state(self, state: dict) -> None:
        pass
