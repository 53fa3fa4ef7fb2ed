"""The shared base of the pooled-network methods (DSH, DPSH, HashNet, GreedyHash, CSQ, ITQ): a ``HashingModel``
(backbone → optional neck → hash layer → activation), its frozen-feature store, parameter groups and encoder.
Each method is a sibling subclass with its own options, hash activation and loss (``make_loss``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..runs.method import Encoded, Method

# DSH's paper recipe (the TrainConfig values its methods start from; each adds its run folder and changes)
PAPER_RECIPE = dict(bits=48, image_size=32, epochs=30, batch_size=200, optimizer="sgd", lr=1e-3, weight_decay=0.004,
                    schedule="step", alpha=0.01)


class PooledMethod(Method):
    """A ``HashingModel`` method; subclasses set ``activation`` (a ``models.activations`` name, None for the
    model's own; a ``model_kwargs`` activation given by the user wins) and build ``self.loss`` in ``make_loss``."""

    activation: ClassVar[str | None] = None
    activation_kwargs: ClassVar[dict] = {}
    frozen_store_resizes = True
    trains_tail = True
    fast_store = True
    mirror_average = True
    gives_features = True
    plain_encoder = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.loss = None  # made with the model (``make_loss``: some losses hold trained modules of it)

    def build_model(self, num_classes: int):
        from ..models import create_model

        cfg = self.cfg
        kw = dict(cfg.model_kwargs)
        if self.activation is not None:
            kw = {"activation": self.activation, "activation_kwargs": dict(self.activation_kwargs), **kw}
        model = create_model(cfg.model, cfg.bits, cfg.image_size, weights=cfg.weights, **kw)
        self.extend_model(model, num_classes)
        self.freeze(model)
        self.inference_settings(model)
        self.loss = self.make_loss(model, num_classes)
        return model

    def extend_model(self, model, num_classes: int) -> None:
        """Add the method's own trained modules to the model (saved in its checkpoint), e.g. a classifier."""

    def freeze(self, model) -> None:
        """Fix the backbone (all but its last ``train_blocks`` blocks) when the config says so."""
        if self.cfg.frozen_backbone:
            model.freeze_backbone(self.cfg.train_blocks)

    def make_loss(self, model, num_classes: int):
        """The objective's loss module (None for a method fitted in closed form)."""
        raise NotImplementedError

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
