"""Triplet mining, separate from the triplet loss: labels in, (anchor, positive, negative) indices out.

Similarity of two images = the number of labels they share. A triplet (q, q+, q−) needs q+ to share
at least one label with q and strictly more than q− does (IAH's ranking: query, more similar, less similar).
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from .base import BaseMiner


def shared_labels(labels: torch.Tensor) -> torch.Tensor:
    """(B, C) multi-hot → (B, B) counts of shared labels."""
    y = labels.float()
    return y @ y.T


class TripletMiner(BaseMiner):
    """Every valid triplet of the batch, or a seeded random ``max_triplets`` of them (the cube of the batch
    size grows fast)."""

    def __init__(self, max_triplets: int | None = None, seed: int = 0):
        if max_triplets is not None and max_triplets < 1:
            raise InvalidInputError(f"max_triplets must be ≥ 1, got {max_triplets}")
        self.max_triplets = max_triplets
        self.gen = torch.Generator().manual_seed(seed)

    def from_similarity(self, sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = sim.shape[0]
        not_self = ~torch.eye(n, dtype=torch.bool, device=sim.device)
        valid = (sim[:, :, None] > sim[:, None, :]) & (sim[:, :, None] > 0)
        valid &= not_self[:, :, None] & not_self[:, None, :]
        a, p, q = valid.nonzero(as_tuple=True)
        if self.max_triplets is not None and len(a) > self.max_triplets:
            keep = torch.randperm(len(a), generator=self.gen)[: self.max_triplets].to(a.device)
            a, p, q = a[keep], p[keep], q[keep]
        return a, p, q

    def mine(self, embeddings, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.from_similarity(shared_labels(labels))

    def rng_state(self) -> dict:
        return {"gen": self.gen.get_state()}

    def set_rng_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


class CategoryTripletMiner(BaseMiner):
    """Triplets per category for category-aware codes: for class c, anchor and positive both contain c and the
    negative does not. Indices address the flattened (B·C) rows of codes shaped (B, C, k): row = image·C + c (``embeddings`` are those rows;
    ``labels`` the (B, C) image labels).
    Built per class from (holders × holders × others) index grids, not from a B³ cube.

    Those triplets alone are satisfied by giving every holder of c the same code for c, which leaves nothing to
    rank within a category; ``graded`` adds, among holders of c, triplets where the positive shares more labels
    with the anchor than the negative does."""

    def __init__(self, max_triplets: int | None = None, seed: int = 0, graded: bool = False):
        if max_triplets is not None and max_triplets < 1:
            raise InvalidInputError(f"max_triplets must be ≥ 1, got {max_triplets}")
        self.max_triplets = max_triplets
        self.graded = graded
        self.inner = TripletMiner(None, seed)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def rng_state(self) -> dict:
        return {"gen": self.gen.get_state(), "inner": self.inner.rng_state()}

    def set_rng_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.inner.set_rng_state(state["inner"])

    def mine(self, embeddings, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c = labels.shape
        has = labels > 0
        parts = []
        for k in range(c):
            pos, neg = has[:, k].nonzero().flatten(), (~has[:, k]).nonzero().flatten()
            if len(pos) < 2 or len(neg) == 0:
                continue
            a, p, n = torch.meshgrid(pos, pos, neg, indexing="ij")
            keep = a != p
            parts.append(torch.stack([a[keep] * c + k, p[keep] * c + k, n[keep] * c + k]))
            if self.graded:
                a, p, n = self.inner(None, labels[pos])
                parts.append(torch.stack([pos[a] * c + k, pos[p] * c + k, pos[n] * c + k]))
        if not parts:
            empty = torch.empty(0, dtype=torch.long, device=labels.device)
            return empty, empty, empty
        t = torch.cat(parts, 1)
        if self.max_triplets is not None and t.shape[1] > self.max_triplets:
            t = t[:, torch.randperm(t.shape[1], generator=self.gen)[: self.max_triplets]]
        return t[0], t[1], t[2]
