"""``HashingModel``: backbone → (optional MLP neck) → linear hash layer → hash activation, with its input
normalisation built in.

Models take float images in [0, 1] (N, 3, H, W) and do their own normalisation from
buffers saved in the state dict, so a checkpoint alone is enough to encode images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..codes import encode_outputs
from ..errors import InvalidInputError
from .activations import create_activation
from .freezing import FreezableBackbone


class HashingModel(FreezableBackbone):
    """A pooled backbone with a hash head. ``freeze_backbone()`` leaves only the neck and hash layer to train
    (and, with ``train_blocks``, the backbone's last blocks and conv head).
    ``activation`` names a hash activation (``deephash.models.activations``; ``activation_kwargs`` such as
    ``{"beta": 2.0}`` go to it): "identity" (DSH, the default) keeps the raw outputs."""

    def __init__(self, backbone: nn.Module, feature_dim: int, bits: int, image_size: tuple[int, int],
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), hidden: int = 0, dropout: float = 0.0,
                 activation: str = "identity", activation_kwargs: dict | None = None):
        super().__init__()
        self.backbone = backbone
        # A hidden layer gives a frozen pretrained backbone a trainable non-linear map to the code;
        # with hidden = 0 the neck is empty and the state dict is the paper's (backbone + hash layer).
        self.neck = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout)) if hidden else nn.Identity()
        self.hash = nn.Linear(hidden or feature_dim, bits)
        for layer in (m for m in (*self.neck.modules(), self.hash) if isinstance(m, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)  # the DSH recipe initialises every layer with Xavier
            nn.init.zeros_(layer.bias)
        self.bits = bits
        self.image_size = tuple(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.activation = create_activation(activation, **(activation_kwargs or {}))
        self.channels_last = False
        self.runtime = None  # an inference runtime giving the same outputs faster (``use_runtime``)
        self.train_blocks = 0  # backbone blocks trained on stored maps (``freeze_backbone``)
        # codes from the mean of each image's and its mirror's outputs (test-time mirroring): a photo and its
        # mirror image get the same code, and a code leans less on which way the subject faces
        self.mirror_average = False

    def use_channels_last(self) -> "HashingModel":
        """NHWC weights and inputs: oneDNN's fast path for depthwise and grouped convolutions on CPU."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def use_runtime(self, runner) -> "HashingModel":
        """Encode with ``runner`` (x → (relaxed codes, pooled features), e.g. ``models.runtime.onnx_runner``)
        instead of PyTorch; None goes back to PyTorch. Only ``encode`` uses it: training never does."""
        self.runtime = runner
        return self

    def set_normalization(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self._normalise(x))

    def freeze_backbone(self, train_blocks: int = 0):
        """Freeze the backbone; with ``train_blocks`` > 0 its last ``train_blocks`` blocks and conv head stay
        trainable, fed from a store of the frozen prefix's maps (``stored_input``/``from_stored``): fine-tuning
        the last stage at the cost of the tail alone, since the prefix is never run again."""
        if not train_blocks:
            return super().freeze_backbone()
        fmap = self.backbone[0] if isinstance(self.backbone, nn.Sequential) else None
        if not hasattr(fmap, "freeze_prefix"):
            raise InvalidInputError(f"train_blocks needs an EfficientNet-Lite backbone; "
                                    f"{type(fmap or self.backbone).__name__} cannot be split")
        if not 0 < train_blocks <= fmap.num_blocks:
            raise InvalidInputError(f"train_blocks must be between 1 and {fmap.num_blocks}, got {train_blocks}")
        fmap.freeze_prefix(fmap.num_blocks - train_blocks)
        self.train_blocks = train_blocks
        return self

    @property
    def split_at(self) -> int:
        """How many backbone blocks a stored map has been through (0: the store keeps pooled features)."""
        return self.backbone[0].num_blocks - self.train_blocks if self.train_blocks else 0

    def stored_input(self, x: torch.Tensor) -> torch.Tensor:
        """What a frozen-feature store keeps for images ``x``: pooled features, or the frozen prefix's map."""
        if not self.train_blocks:
            return self.features(x)
        return self.backbone[0].prefix(self._normalise(x), self.split_at)

    def from_stored(self, stored: torch.Tensor) -> torch.Tensor:
        """Relaxed codes from a store's rows (``stored_input``); float16 maps are widened here."""
        return self.head(self.stored_features(stored))

    def stored_features(self, stored: torch.Tensor) -> torch.Tensor:
        """Pooled features from a store's rows: the trainable tail's output when the store keeps maps."""
        if not self.train_blocks:
            return stored
        x = stored.float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone[2](self.backbone[1](self.backbone[0].tail(x, self.split_at)))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features → relaxed codes."""
        return self.activation(self.hash(self.neck(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed codes: activated outputs whose signs are the bits."""
        return self.head(self.features(x))

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, features: bool = False):
        """Packed binary codes (N, bits/8) uint8, in np.packbits order; with ``features`` also the backbone's
        pooled features (N, D) float16 of the same forward pass, as (codes, features)."""
        if self.runtime is not None:  # an exported (eval-mode) graph: no mode to switch, which walks every
            outputs, feats = self._averaged(self.runtime, x)  # module twice (~4% of a batch in the fast path)
        else:
            was_training = self.training
            self.eval()
            try:
                outputs, feats = self._averaged(lambda v: (self.head(f := self.features(v)), f), x)
            finally:
                self.train(was_training)
        codes = encode_outputs(outputs)
        return (codes, feats.float().cpu().numpy().astype(np.float16)) if features else codes

    def _averaged(self, run, x: torch.Tensor, mirrored: torch.Tensor | None = None):
        """(outputs, features) of ``run`` on ``x``; with ``mirror_average`` the mean over ``x`` and its mirror
        (``mirrored``, the mirror's stored rows, or else ``x`` flipped)."""
        outputs, feats = run(x)
        if self.mirror_average:
            o, f = run(x.flip(-1) if mirrored is None else mirrored)
            outputs, feats = (outputs + o) / 2, (feats + f) / 2
        return outputs, feats

    @torch.inference_mode()
    def encode_stored(self, stored: torch.Tensor, features: bool = False, mirrored: torch.Tensor | None = None):
        """``encode`` from a store's rows instead of images: (codes, float16 pooled features or None).
        ``mirrored``: the store's rows of the mirror images, which a model with ``mirror_average`` needs."""
        if self.mirror_average and mirrored is None:
            raise InvalidInputError("this model averages each image with its mirror: give the mirrored rows too")
        was_training = self.training
        self.eval()
        try:
            outputs, feats = self._averaged(lambda v: (self.head(f := self.stored_features(v)), f), stored, mirrored)
            codes = encode_outputs(outputs)
            return codes, (feats.float().cpu().numpy().astype(np.float16) if features else None)
        finally:
            self.train(was_training)

    def parameter_groups(self, lr: float, weight_decay: float, bias_lr_mult: float = 1.0,
                         hash_lr_mult: float = 1.0) -> list[dict]:
        """Caffe-style groups: biases get ``bias_lr_mult``× lr and no weight decay (the DSH recipe);
        the hash layer can get its own multiplier (fine-tuning a new code length)."""
        groups: dict[tuple, list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_bias = p.ndim == 1
            mult = (bias_lr_mult if is_bias else 1.0) * (hash_lr_mult if name.startswith("hash.") else 1.0)
            groups.setdefault((mult, 0.0 if is_bias else weight_decay), []).append(p)
        return [{"params": ps, "lr": lr * m, "weight_decay": wd} for (m, wd), ps in groups.items()]
