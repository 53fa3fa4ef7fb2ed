"""One factory over a registry of architectures: ``create_model(name, bits=...)``.

Pretrained weights come only from a local file (``weights=path``): nothing is
downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..codes import check_code_length
from ..errors import DeephashError
from .dsh_net import DSHBackbone
from .hashnet import HashNet

_REGISTRY: dict[str, Callable[..., tuple[nn.Module, int, dict]]] = {}
_OWN_WEIGHTS = {"efficientnet_lite0"}  # builders that load (and may locate) their weights themselves

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_model(name: str):
    """Register ``fn(image_size, **kw) -> (backbone, feature_dim, default_normalisation)``."""

    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _size(image_size) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def create_model(name: str, bits: int, image_size: int | tuple[int, int] = 32, weights: str | Path | None = None,
                 hidden: int = 0, dropout: float = 0.0, **kwargs) -> HashNet:
    """Build a hashing network; ``weights`` is a local backbone state-dict file (e.g. ImageNet), or
    ``"imagenet"`` for a model whose ImageNet weights are installed as a package. ``hidden`` > 0 puts
    a ReLU layer of that width (with ``dropout``) between the backbone and the hash layer; other
    keywords go to the backbone's builder."""
    if name not in _REGISTRY:
        raise DeephashError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    check_code_length(bits)
    if hidden < 0 or not 0 <= dropout < 1:
        raise DeephashError(f"hidden must be ≥ 0 and dropout in [0, 1), got hidden={hidden}, dropout={dropout}")
    size = _size(image_size)
    if name in _OWN_WEIGHTS:
        backbone, dim, norm = _REGISTRY[name](size, weights=weights, **kwargs)
    else:
        if str(weights) == "imagenet":
            raise DeephashError(f"no installed ImageNet weights for {name!r}; give a local weights file "
                                f"(installed: {', '.join(sorted(_OWN_WEIGHTS))})")
        backbone, dim, norm = _REGISTRY[name](size, **kwargs)
        if weights is not None:
            load_backbone_weights(backbone, weights)
    return HashNet(backbone, dim, bits, size, **norm, hidden=hidden, dropout=dropout)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise DeephashError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DeephashError(f"cannot read weights file {path}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    load_matching(backbone, state, str(path))


def load_matching(module: nn.Module, state: dict, source: str) -> int:
    """Load the tensors of ``state`` whose names and shapes match ``module``; the rest keep their
    values (e.g. a new hash layer of another length). Nothing matching is an error."""
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise DeephashError(f"{source}: no tensor matches the model's parameters (wrong architecture?)")
    module.load_state_dict(usable, strict=False)
    return len(usable)


@register_model("dsh")
def _dsh(size, batch_norm: bool = False, width: int = 1):
    net = DSHBackbone(size, batch_norm=batch_norm, width=width)
    # The paper subtracts the mean of 0..255 pixels; std = 1/255 reproduces that scale.
    return net, net.out_features, {"mean": (0.5, 0.5, 0.5), "std": (1 / 255, 1 / 255, 1 / 255)}


def _torchvision(arch: str, head_attr: str):
    def build(size, **kw):
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None, **kw)
        head = getattr(net, head_attr)
        if isinstance(head, nn.Sequential):
            dim = next(m for m in reversed(head) if isinstance(m, nn.Linear)).in_features
        else:
            dim = head.in_features
        setattr(net, head_attr, nn.Identity())
        return net, dim, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}

    return build


for _arch, _head in [("resnet18", "fc"), ("resnet34", "fc"), ("resnet50", "fc"), ("mobilenet_v3_small", "classifier"),
                     ("efficientnet_b0", "classifier")]:
    register_model(_arch)(_torchvision(_arch, _head))


@register_model("efficientnet_lite0")
def _efficientnet_lite0(size, weights=None, frozen_blocks: int = 0):
    """Global-average-pooled Lite0 features; its ImageNet weights come with ``weights="imagenet"``."""
    from .efficientnet import LITE0_CHANNELS, LITE0_NORMALISATION, efficientnet_lite0

    net = nn.Sequential(efficientnet_lite0(weights, frozen_blocks), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, LITE0_CHANNELS, LITE0_NORMALISATION


@register_model("googlenet")
def _googlenet(size, **kw):
    import torchvision.models as tvm

    net = tvm.googlenet(weights=None, aux_logits=False, init_weights=True, **kw)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
