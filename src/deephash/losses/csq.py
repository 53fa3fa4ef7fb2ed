"""CSQ (Yuan et al., CVPR 2020): each class has a hash centre, a ±1 vector far from the others in Hamming
space (rows of a Hadamard matrix and their negatives when the code length allows, else random Bernoulli
vectors); codes are pulled to their class's centre with a binary cross-entropy, plus a quantization term."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..miners import BaseMiner, ItemsMiner
from .base import BaseLoss


def hash_centers(num_classes: int, bits: int, kind: str = "auto", seed: int = 0, tries: int = 200) -> torch.Tensor:
    """(num_classes, bits) ±1 centres. ``hadamard``: rows of the Hadamard matrix of order ``bits`` (a power of
    two), then their negatives, pairwise at Hamming distance ≥ bits/2; needs 2·bits ≥ num_classes.
    ``random``: Bernoulli(½) vectors, the best of ``tries`` seeded draws by minimum pairwise distance (expected
    distance bits/2). ``auto``: hadamard when possible, else random (the paper's rule)."""
    if kind not in ("auto", "hadamard", "random"):
        raise InvalidInputError(f"hash centres must be auto, hadamard or random, got {kind!r}")
    hadamard_ok = bits >= 1 and bits & (bits - 1) == 0 and 2 * bits >= num_classes
    if kind == "hadamard" and not hadamard_ok:
        raise InvalidInputError(f"Hadamard hash centres need bits a power of two with 2·bits ≥ classes; "
                                f"got {bits} bits for {num_classes} classes (use centers=random)")
    if kind != "random" and hadamard_ok:
        h = np.ones((1, 1), dtype=np.int64)
        while len(h) < bits:  # Sylvester's construction: H₂ₙ = [[H, H], [H, −H]]
            h = np.block([[h, h], [h, -h]])
        return torch.from_numpy(np.concatenate([h, -h])[:num_classes].astype(np.float32))
    rng = np.random.default_rng(seed)
    best, best_d = None, -1
    for _ in range(tries):
        c = rng.integers(0, 2, (num_classes, bits)) * 2 - 1
        d = (bits - c @ c.T) / 2 if num_classes > 1 else np.full((1, 1), bits)
        np.fill_diagonal(d, bits)
        if d.min() > best_d:
            best, best_d = c, d.min()
    return torch.from_numpy(best.astype(np.float32))


class CSQLoss(BaseLoss):
    """L = mean over elements of BCE(½(h + 1), ½(c + 1)) + λ · mean over elements of (|h| − 1)², h = tanh
    outputs in (−1, 1), c the item's centre: its class's centre, or for a multi-label item the sign of the sum
    of its classes' centres with ties (0) taken from one fixed random ±1 vector. Tuples: (positions, label rows)."""

    def __init__(self, centers: torch.Tensor, lam: float = 1e-4, seed: int = 0, miner: BaseMiner | None = None):
        super().__init__(miner or ItemsMiner())
        self.register_buffer("centers", centers.float())
        gen = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("tie_break", torch.randint(0, 2, (centers.shape[1],), generator=gen).float() * 2 - 1)
        self.lam = lam

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        centers = self.centers.to(labels.device)
        s = labels.to(centers.dtype) @ centers
        return torch.where(s == 0, self.tie_break.to(s), s.sign())

    def compute(self, h: torch.Tensor, items: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        idx, labels = items
        h = h[idx]
        c = self.targets(labels.to(h.device)).to(h.dtype)
        p = (0.5 * (h + 1)).clamp(1e-7, 1 - 1e-7)
        center = F.binary_cross_entropy(p, 0.5 * (c + 1))
        quant = (h.abs() - 1).pow(2).mean()
        return center + self.lam * quant
