"""DSH (Liu et al., CVPR 2016): a hashing network trained with the pairwise DSH loss over every pair of
the batch. Its settings are TrainConfig's own (margin, alpha, bias/hash LR multipliers, normalize)."""

from __future__ import annotations

import numpy as np
import torch

from ..losses import DSHLoss
from .base import Encoded, Method, register_method


@register_method
class DSH(Method):
    name = "dsh"
    defaults = dict(bits=48, image_size=32, epochs=30, batch_size=200, optimizer="sgd", lr=1e-3, weight_decay=0.004,
                    schedule="step", alpha=0.01, out="runs/dsh")
    frozen_store_resizes = True
    trains_tail = True
    fast_store = True
    mirror_average = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.loss = DSHLoss(cfg.bits, cfg.margin, cfg.alpha)

    def build_model(self, num_classes: int):
        from ..models import create_model

        cfg = self.cfg
        model = create_model(cfg.model, cfg.bits, cfg.image_size, weights=cfg.weights, **cfg.model_kwargs)
        if cfg.frozen_backbone:
            model.freeze_backbone(cfg.train_blocks)
        return self.inference_settings(model)

    def inference_settings(self, model):
        """The config's settings of how the built model runs: memory layout and test-time mirroring."""
        if self.cfg.channels_last:
            model.use_channels_last()
        model.mirror_average = self.cfg.mirror_average
        return model

    def setup(self, model, data) -> None:
        if self.cfg.normalize == "dataset" or (self.cfg.normalize == "auto" and self.cfg.model == "dsh"):
            model.set_normalization(data.images.reshape(-1, 3).mean(0) / 255.0, model.std)

    def parameter_groups(self, model):
        c = self.cfg
        return model.parameter_groups(c.lr, c.weight_decay, c.bias_lr_mult, c.hash_lr_mult)

    def frozen_store(self, model, images_u8: np.ndarray, progress: bool) -> torch.Tensor:
        from ..features import stored_views

        return stored_views(model, images_u8, self.cfg.mirror, progress, fast=self.cfg.fast_features)

    def forward(self, model, x, idx, flipped, stored: bool):
        return model.from_stored(x) if stored else model(x)

    def objective(self, outputs, labels):
        return {"loss": self.loss(outputs, labels)}

    def encode(self, model, dataset, batch_size: int, progress: bool, workers: int = 0,
               features: bool = False, rows=None) -> Encoded:
        """Semantic codes only (with ``features``, also the pooled backbone features), of every image or of
        ``rows``; file datasets skip unreadable images; a frozen backbone's stored features of these pixels are
        reused (``deephash.encode.encode_dataset``)."""
        from ..encode import encode_dataset

        r = encode_dataset(model, dataset, batch_size=batch_size, workers=workers, progress=progress,
                           features=features, rows=rows)
        return Encoded(r.codes, r.indices, r.failures, bits=model.bits, features=r.features)
