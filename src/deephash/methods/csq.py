"""CSQ (Yuan et al., CVPR 2020): codes tanh(z) pulled to their class's hash centre (Hadamard rows or random
Bernoulli vectors) with a binary cross-entropy, plus a quantization term."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError
from ..losses import CSQLoss, hash_centers
from ..runs.method import register_method
from .pooled import PAPER_RECIPE, PooledMethod


@dataclass
class CSQOptions:
    lam: float = 1e-4        # quantization weight λ (the paper's and DeepHash-pytorch's 0.0001)
    centers: str = "auto"    # hadamard | random | auto (Hadamard when bits is a power of two ≥ classes/2)

    def __post_init__(self):
        if self.centers not in ("auto", "hadamard", "random"):
            raise InvalidInputError(f"csq centers must be auto, hadamard or random, got {self.centers!r}")


@register_method
class CSQ(PooledMethod):
    name = "csq"
    Options = CSQOptions
    defaults = {**PAPER_RECIPE, "out": "runs/csq"}
    activation = "tanh"

    def make_loss(self, model, num_classes):
        centers = hash_centers(num_classes, self.cfg.bits, self.options.centers, self.cfg.seed)
        return CSQLoss(centers, self.options.lam, self.cfg.seed).to(next(model.parameters()).device)
