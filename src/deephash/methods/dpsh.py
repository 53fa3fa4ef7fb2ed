"""DPSH (Li, Wang & Kang, IJCAI 2016): pairwise likelihood on the hash layer's raw outputs, plus quantization."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import DPSHLoss
from ..runs.method import register_method
from .pooled import PAPER_RECIPE, PooledMethod


@dataclass
class DPSHOptions:
    eta: float = 0.1  # quantization weight (DeepHash-pytorch's "alpha" = 0.1, with both terms as means)


@register_method
class DPSH(PooledMethod):
    name = "dpsh"
    Options = DPSHOptions
    # raw outputs in θ = ½uᵀu make larger steps diverge on the paper net (DSH's lr 1e-3 gives NaN on digits)
    defaults = {**PAPER_RECIPE, "lr": 1e-4, "out": "runs/dpsh"}
    activation = "identity"

    def make_loss(self, model, num_classes):
        return DPSHLoss(self.cfg.bits, self.options.eta)
