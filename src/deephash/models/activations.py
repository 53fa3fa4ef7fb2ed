"""Hash activations: the map from a hash layer's real outputs to the relaxed codes a loss sees.

Methods differ here: DSH regularises raw outputs, HashNet (Cao et al. 2017) trains ``tanh(βx)`` with β
raised during training, GreedyHash takes ``sign`` forward with a straight-through gradient. Every
activation must keep the sign of its input (odd and monotone), so the bits of a code, ``sign(output)``,
are the same with any of them. ``create_activation(name, **kw)`` builds one from the registry.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError

_ACTIVATIONS: dict[str, type[nn.Module]] = {}


def register_activation(name: str):
    """Class decorator adding a sign-preserving activation module under ``name`` (unique)."""

    def deco(cls):
        if name in _ACTIVATIONS:
            raise InvalidInputError(f"hash activation {name!r} is already registered ({_ACTIVATIONS[name].__qualname__})")
        cls.name = name
        _ACTIVATIONS[name] = cls
        return cls

    return deco


def list_activations() -> list[str]:
    return sorted(_ACTIVATIONS)


def create_activation(name: str, **kwargs) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise InvalidInputError(f"unknown hash activation {name!r}; available: {', '.join(list_activations())}")
    try:
        return _ACTIVATIONS[name](**kwargs)
    except TypeError as e:
        raise InvalidInputError(f"hash activation {name!r}: {e}") from None


@register_activation("identity")
class IdentityActivation(nn.Module):
    """Raw outputs (DSH); stateless, so the model's state dict is the paper's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_activation("tanh")
class TanhActivation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@register_activation("scaled_tanh")
class ScaledTanh(nn.Module):
    """``tanh(β·x)``; β is a buffer so a checkpoint keeps the value a continuation schedule reached."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.register_buffer("beta", torch.tensor(_positive_beta(beta), dtype=torch.float32))

    def set_beta(self, beta: float) -> None:
        self.beta.fill_(_positive_beta(beta))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={self.beta.item():g}"


@register_activation("sign_ste")
class SignSTE(nn.Module):
    """±1 forward (sign(0) = +1, as ``deephash.codes.binarize``), identity gradient backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
        return sign + (x - x.detach())  # exactly ±1 in value; d/dx = 1


def _positive_beta(beta) -> float:
    try:
        beta = float(beta)
    except (TypeError, ValueError):
        beta = float("nan")
    if not 0 < beta < float("inf"):
        raise InvalidInputError(f"scaled_tanh beta must be a finite number > 0 (a sign-preserving scale), got {beta}")
    return beta
