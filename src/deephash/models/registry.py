"""One registry of hashing models and of the backbones they are built on.

``create_model(name, bits=..., **kw)`` builds any registered model and ``list_models()`` names them.
Each pooled backbone (one feature vector per image) gives the model of the same name: a ``HashingModel``
(DSH-style hash head) on it. Feature-map backbones (kind "map", a conv map per image) serve IAH:
``create_model("iah", bits=..., num_classes=..., backbone="resnet18")``. A backbone is returned with
the input normalisation its weights were trained with, so weights never meet the wrong preprocessing.

Pretrained weights come only from local files (``weights=path``) or installed packages
(``weights="imagenet"`` for EfficientNet-Lite0): nothing is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from ..codes import check_code_length
from ..errors import InvalidInputError
from .dsh_net import DSHBackbone
from .efficientnet import LITE0_CHANNELS, LITE0_NORMALISATION, LITE0_STRIDE, efficientnet_lite, efficientnet_lite0
from .hashing_model import HashingModel
from .weights import load_backbone_weights

POOLED, MAP = "pooled", "map"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


@dataclass(frozen=True)
class BackboneEntry:
    """``build`` returns (module, feature_dim, normalisation) for kind "pooled" (called with ``size=(h, w)``)
    and (module, channels, stride, normalisation) for kind "map". An ``own_weights`` builder takes
    ``weights=`` itself (to load them before cutting the network down, or to resolve ``"imagenet"``);
    otherwise the weights file is loaded into the built module."""

    name: str
    kind: str
    build: Callable[..., tuple]
    own_weights: bool = False


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_BACKBONES: dict[tuple[str, str], BackboneEntry] = {}


def register_model(name: str):
    """Decorator: ``fn(bits, **kw) -> nn.Module`` becomes ``create_model(name, bits=..., **kw)``."""

    def deco(fn):
        if name in _MODELS:
            raise InvalidInputError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def register_backbone(name: str, kind: str = POOLED, own_weights: bool = False):
    """Decorator adding a backbone builder (see ``BackboneEntry``). A pooled backbone also registers the
    hashing model of the same name on it, so a name already taken by a model is refused."""
    if kind not in (POOLED, MAP):
        raise InvalidInputError(f"backbone kind must be {POOLED!r} or {MAP!r}, got {kind!r}")

    def deco(fn):
        if (kind, name) in _BACKBONES:
            raise InvalidInputError(f"{kind} backbone {name!r} is already registered")
        if kind == POOLED:
            register_model(name)(_hashing_model(name))
        _BACKBONES[kind, name] = BackboneEntry(name, kind, fn, own_weights)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def list_backbones(kind: str = POOLED) -> list[str]:
    return sorted(n for k, n in _BACKBONES if k == kind)


def create_model(name: str, bits: int, image_size: int | tuple[int, int] | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``bits``-bit codes for ``image_size`` inputs (None: the
    model's default); the keywords are the model's own (for a pooled backbone's model: weights, hidden,
    dropout, activation, activation_kwargs and the backbone's options; for "iah": see ``deephash.models.iah``)."""
    if name not in _MODELS:
        raise InvalidInputError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    check_code_length(bits)
    if image_size is not None:
        kwargs["image_size"] = image_size
    try:
        return _MODELS[name](bits, **kwargs)
    except TypeError as e:
        raise InvalidInputError(f"model {name!r}: {e}") from e


def build_backbone(name: str, kind: str = POOLED, weights: str | Path | None = None, **kwargs) -> tuple:
    """The registered backbone's builder output (see ``BackboneEntry``) with ``weights`` loaded."""
    entry = _BACKBONES.get((kind, name))
    if entry is None:
        raise InvalidInputError(f"unknown {kind} backbone {name!r}; available: {', '.join(list_backbones(kind))}")
    if entry.own_weights:
        return entry.build(weights=weights, **kwargs)
    if str(weights) == "imagenet":
        installed = sorted(n for (k, n), e in _BACKBONES.items() if k == kind and e.own_weights)
        raise InvalidInputError(f"no installed ImageNet weights for {name!r}; give a local weights file "
                            f"(installed: {', '.join(installed)})")
    built = entry.build(**kwargs)
    if weights is not None:
        load_backbone_weights(built[0], weights)
    return built


def image_size_pair(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _hashing_model(backbone: str) -> Callable[..., HashingModel]:
    def build(bits: int, image_size: int | tuple[int, int] = 32, weights: str | Path | None = None,
              hidden: int = 0, dropout: float = 0.0, activation: str = "identity",
              activation_kwargs: dict | None = None, **backbone_kwargs) -> HashingModel:
        if hidden < 0 or not 0 <= dropout < 1:
            raise InvalidInputError(f"hidden must be ≥ 0 and dropout in [0, 1), got hidden={hidden}, dropout={dropout}")
        size = image_size_pair(image_size)
        net, dim, norm = build_backbone(backbone, POOLED, weights, size=size, **backbone_kwargs)
        return HashingModel(net, dim, bits, size, **norm, hidden=hidden, dropout=dropout, activation=activation,
                            activation_kwargs=activation_kwargs)

    build.__doc__ = (f"A hashing model on the pooled {backbone!r} backbone: ``weights`` is a local backbone "
                     "state-dict file (or an installed name such as \"imagenet\"); ``hidden`` > 0 puts a ReLU "
                     "layer of that width (with ``dropout``) before the hash layer; ``activation`` names the hash "
                     "activation; other keywords go to the backbone's builder.")
    return build


# --- pooled backbones: one feature vector per image ---

@register_backbone("dsh")
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
        return net, dim, IMAGENET

    return build


for _arch, _head in [("resnet18", "fc"), ("resnet34", "fc"), ("resnet50", "fc"), ("mobilenet_v3_small", "classifier"),
                     ("efficientnet_b0", "classifier")]:
    register_backbone(_arch)(_torchvision(_arch, _head))


@register_backbone("efficientnet_lite0", own_weights=True)
def _efficientnet_lite0(size, weights=None, frozen_blocks: int = 0):
    """Global-average-pooled Lite0 features; its ImageNet weights come with ``weights="imagenet"``."""
    net = nn.Sequential(efficientnet_lite0(weights, frozen_blocks), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, LITE0_CHANNELS, LITE0_NORMALISATION


def _efficientnet_lite_pooled(variant: int):
    def build(size, weights=None, frozen_blocks: int = 0):
        net = nn.Sequential(efficientnet_lite(variant, weights, frozen_blocks), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return net, LITE0_CHANNELS, LITE0_NORMALISATION

    build.__doc__ = f"Global-average-pooled EfficientNet-Lite{variant} features (``weights=\"imagenet\"``: installed)."
    return build


for _variant in (1, 2):
    register_backbone(f"efficientnet_lite{_variant}", own_weights=True)(_efficientnet_lite_pooled(_variant))


@register_backbone("googlenet")
def _googlenet(size, **kw):
    import torchvision.models as tvm

    net = tvm.googlenet(weights=None, aux_logits=False, init_weights=True, **kw)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim, IMAGENET


# --- feature-map backbones (IAH): a conv map per image; weights load into the whole network before the cut ---

@register_backbone("dsh", MAP, own_weights=True)
def _dsh_feature_map(weights=None, width: int = 1):
    """The DSH conv stack (5×5 convs, 32/32/64 filters) with batch norm for fast training, stopping
    before the last pooling so small images keep a stride-4 map fine enough for small proposals."""
    c1, c2, c3 = 32 * width, 32 * width, 64 * width
    net = nn.Sequential(
        nn.Conv2d(3, c1, 5, padding=2), nn.MaxPool2d(3, 2, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c1),
        nn.Conv2d(c1, c2, 5, padding=2), nn.AvgPool2d(3, 2, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c2),
        nn.Conv2d(c2, c3, 5, padding=2), nn.ReLU(inplace=True), nn.BatchNorm2d(c3),
    )
    if weights is not None:
        load_backbone_weights(net, weights)
    return net, c3, 4, {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


@register_backbone("resnet18", MAP, own_weights=True)
def _resnet18_feature_map(weights=None):
    """resnet18 up to layer3 (stride 16); ``weights`` is a torchvision resnet18 state-dict file."""
    import torchvision.models as tvm

    r = tvm.resnet18(weights=None)
    if weights is not None:
        load_backbone_weights(r, weights)
    net = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
    return net, 256, 16, IMAGENET


@register_backbone("googlenet", MAP, own_weights=True)
def _googlenet_feature_map(weights=None):
    """GoogLeNet (the IAH paper's network) up to inception4e (stride 16)."""
    import torchvision.models as tvm

    g = tvm.googlenet(weights=None, aux_logits=False, init_weights=True)
    if weights is not None:
        load_backbone_weights(g, weights)
    names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
             "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]
    return nn.Sequential(*[getattr(g, n) for n in names]), 832, 16, IMAGENET


@register_backbone("efficientnet_lite0", MAP, own_weights=True)
def _efficientnet_lite0_feature_map(weights=None):
    """EfficientNet-Lite0's last conv map (stride 32); ``weights`` may be ``"imagenet"``."""
    return efficientnet_lite0(weights), LITE0_CHANNELS, LITE0_STRIDE, LITE0_NORMALISATION
