"""HashNet (Cao et al., ICCV 2017): weighted pairwise likelihood on tanh(β·z), with β raised during training
("continuation") so the relaxed codes converge to sign(z) = the bits."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import HashNetLoss
from ..runs.method import register_method
from .pooled import PAPER_RECIPE, PooledMethod


@dataclass
class HashNetOptions:
    alpha: float | None = None   # adaptive-sigmoid scale; None: 10 / bits (the authors' setting)
    weighted: bool = True        # balance similar and dissimilar pairs
    beta_gamma: float = 0.005    # β = (1 + γ·step)^power (the authors' caffe schedule: γ 0.005, power 0.5)
    beta_power: float = 0.5


@register_method
class HashNet(PooledMethod):
    name = "hashnet"
    Options = HashNetOptions
    defaults = {**PAPER_RECIPE, "out": "runs/hashnet"}
    activation = "scaled_tanh"

    def make_loss(self, model, num_classes):
        o = self.options
        return HashNetLoss(self.cfg.bits, o.alpha, o.weighted)

    def beta(self, step: int) -> float:
        o = self.options
        return (1.0 + o.beta_gamma * step) ** o.beta_power

    def before_step(self, model, step, total):
        """β for this step (a function of the step alone, and a buffer of the model: a checkpoint keeps it)."""
        if hasattr(model.activation, "set_beta"):
            model.activation.set_beta(self.beta(step))
