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
from .activations import create_activation
from .freezing import FreezableBackbone


class HashingModel(FreezableBackbone):
    """A pooled backbone with a hash head. ``freeze_backbone()`` leaves only the neck and hash layer to train.
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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

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
            outputs, feats = self.runtime(x)  # module twice (~4% of a batch's time in the fast path)
        else:
            was_training = self.training
            self.eval()
            try:
                feats = self.features(x)
                outputs = self.head(feats)
            finally:
                self.train(was_training)
        codes = encode_outputs(outputs)
        return (codes, feats.float().cpu().numpy().astype(np.float16)) if features else codes

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
