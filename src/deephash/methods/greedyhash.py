"""GreedyHash (Su et al., NeurIPS 2018): sign(h) in the forward pass with a straight-through gradient, a
classifier on the binary codes, and a cubic penalty keeping h near ±1."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..losses import GreedyHashLoss
from ..runs.method import register_method
from .pooled import PAPER_RECIPE, PooledMethod


@dataclass
class GreedyHashOptions:
    alpha: float = 0.1  # weight of the | |h| − 1 |³ penalty (DeepHash-pytorch's GreedyHash setting)


@register_method
class GreedyHash(PooledMethod):
    name = "greedyhash"
    Options = GreedyHashOptions
    # the cubic penalty on the paper net's large initial outputs overflows at DSH's lr 1e-3 (digits)
    defaults = {**PAPER_RECIPE, "lr": 1e-4, "out": "runs/greedyhash"}
    activation = "identity"

    def extend_model(self, model, num_classes):
        """The classifier on the codes trains with the network and is saved with it (unused when encoding)."""
        model.classifier = nn.Linear(model.bits, num_classes)

    def make_loss(self, model, num_classes):
        return GreedyHashLoss(model.classifier, self.options.alpha)
