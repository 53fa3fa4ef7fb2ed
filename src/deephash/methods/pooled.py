"""The shared base of the pooled-network hashing methods (DPSH, HashNet, GreedyHash, CSQ): DSH's model,
frozen-feature store, parameter groups and encoder, with the method's own hash activation and loss."""

from __future__ import annotations

from .dsh import DSH


class PooledMethod(DSH):
    """A ``HashingModel`` method; subclasses set ``activation`` (a ``models.activations`` name; a
    ``model_kwargs`` activation given by the user wins) and build ``self.loss`` in ``make_loss``."""

    activation = "identity"
    activation_kwargs: dict = {}

    def __init__(self, cfg):
        super(DSH, self).__init__(cfg)
        self.loss = None

    def build_model(self, num_classes: int):
        from ..models import create_model

        cfg = self.cfg
        kw = {"activation": self.activation, "activation_kwargs": dict(self.activation_kwargs), **cfg.model_kwargs}
        model = create_model(cfg.model, cfg.bits, cfg.image_size, weights=cfg.weights, **kw)
        self.extend_model(model, num_classes)
        if cfg.frozen_backbone:
            model.freeze_backbone(cfg.train_blocks)
        self.inference_settings(model)
        self.loss = self.make_loss(model, num_classes)
        return model

    def extend_model(self, model, num_classes: int) -> None:
        """Add the method's own trained modules to the model (saved in its checkpoint), e.g. a classifier."""

    def make_loss(self, model, num_classes: int):
        raise NotImplementedError

    def objective(self, outputs, labels):
        return {"loss": self.loss(outputs, labels)}
