"""A backbone that can be frozen: fixed weights AND fixed batch-norm statistics, whatever ``train()`` says."""

from __future__ import annotations

from torch import nn


class FreezableBackbone(nn.Module):
    """Base for networks whose conv backbone (the submodule named by ``BACKBONE``) can be frozen. A frozen
    backbone maps an image to the same features in every epoch, so callers may compute them once
    (``deephash.features``, ``TrainConfig.frozen_backbone``) and train only the layers after it."""

    BACKBONE = "backbone"
    backbone_frozen = False

    def freeze_backbone(self):
        module = getattr(self, self.BACKBONE)
        module.requires_grad_(False)
        self.backbone_frozen = True
        module.train(False)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            getattr(self, self.BACKBONE).train(False)
        return self
