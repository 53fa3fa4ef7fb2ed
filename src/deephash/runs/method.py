"""The method plug-in contract (``Method``), its registry, and what encoding returns (``Encoded``).

Plug-ins are the modules of the ``deephash.methods`` package: the registry imports every one of them the first
time a method is looked up (``pkgutil`` over the package; a module whose name starts with ``_`` is skipped), and
each registers its classes with ``@register_method``. Nothing lists them by hand, and nothing here imports a
method, so methods and the training engine both build on this module without importing each other.

What a method can do is said by its class flags alone (``closed_form``, ``needs_labels``, ``trains_tail``,
``fast_store``, ``mirror_average``, ``gives_features``, ``plain_encoder``); ``TrainConfig.validate`` and the
encoders read them."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..data import ArrayDataset, HashDataset
    from .config import TrainConfig


@dataclass
class NoOptions:
    pass


@dataclass
class Encoded:
    codes: np.ndarray                    # (n, nbytes) uint8 semantic codes, np.packbits order
    indices: np.ndarray                  # dataset positions encoded
    failures: list = field(default_factory=list)  # (path, reason) of skipped items
    category: np.ndarray | None = None   # (n, C, nbytes) category-aware codes
    probs: np.ndarray | None = None      # (n, C) image-level class probabilities
    boxes: np.ndarray | None = None      # (n, C, 4) best proposal per category, normalised x1, y1, x2, y2
    bits: int = 0
    features: np.ndarray | None = None   # (n, D) float16 pooled backbone features (when asked for)


class Method:
    """One hashing method for the shared training engine (the contract: ``deephash.methods``'s docstring)."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    defaults: ClassVar[dict] = {}        # TrainConfig values this method starts from (fields left at None)
    encode_batch_size: ClassVar[int] = 256
    frozen_store_resizes: ClassVar[bool] = False  # the store resizes each batch, so data stays at stored size
    closed_form: ClassVar[bool] = False  # fitted once on the frozen store (``fit_features``), no gradient steps
    needs_labels: ClassVar[bool] = True  # False: trains on images alone (unlabelled folders)
    # what its frozen store can do (the config refuses the setting otherwise): hold prefix maps for a trained
    # tail (train_blocks), be computed in ONNX Runtime (fast_features)
    trains_tail: ClassVar[bool] = False
    fast_store: ClassVar[bool] = False
    mirror_average: ClassVar[bool] = False  # its model can encode with test-time mirroring (mirror_average)
    gives_features: ClassVar[bool] = False  # ``encode(..., features=True)`` returns a float vector per image
    # codes are the model's outputs alone (no per-image extras such as proposals), so its exported graph can
    # answer image queries without torch (``retrieval/query_graph.py``)
    plain_encoder: ClassVar[bool] = False

    def __init__(self, cfg: "TrainConfig"):
        self.cfg = cfg
        self.options = self.Options(**cfg.method_options)

    @classmethod
    def resolve_options(cls, given: dict | None) -> dict:
        """``given`` checked against ``Options`` (unknown keys refused) and completed with its defaults."""
        given = dict(given or {})
        names = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(given) - names)
        if unknown:
            allowed = ", ".join(sorted(names)) or "none"
            raise InvalidInputError(f"unknown {cls.name} method option(s): {', '.join(unknown)} (allowed: {allowed})")
        return dataclasses.asdict(cls.Options(**given))

    @classmethod
    def legacy_config(cls, saved: dict) -> dict:
        """A TrainConfig dict from the config of this method's own older checkpoint format (``LEGACY_FORMATS``)."""
        return saved

    @classmethod
    def validate_config(cls, cfg: "TrainConfig") -> None:
        """Refuse settings this method cannot honour (DeephashError)."""

    # --- training ---------------------------------------------------------------------------------
    def arrays(self, dataset: "HashDataset", progress: bool) -> "ArrayDataset":
        """The training set in memory as uint8 arrays at the size training reads them."""
        from ..data import ArrayDataset
        from ..data.augment import resize_arrays

        data = dataset if isinstance(dataset, ArrayDataset) else dataset.as_arrays(progress=progress)
        size = self.cfg.image_size
        if data.image_size != (size, size) and not (self.cfg.frozen_backbone and self.frozen_store_resizes):
            data = resize_arrays(data, size)
        return data

    def prepare(self, data: "ArrayDataset", progress: bool) -> None:
        """Per-run data the batches need besides images and labels (e.g. proposals); before the model."""

    def build_model(self, num_classes: int) -> nn.Module:
        """The network from the config alone (frozen backbone applied): used to train and to load."""
        raise NotImplementedError

    def setup(self, model: nn.Module, data: "ArrayDataset") -> None:
        """Training-only initialisation from the data (e.g. input normalisation)."""

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.cfg.lr,
                 "weight_decay": self.cfg.weight_decay}]

    def frozen_store(self, model: nn.Module, images_u8: np.ndarray, progress: bool) -> torch.Tensor:
        """(views, N, ...) what the frozen backbone gives for each image; view 1 is the mirror image."""
        raise NotImplementedError

    def forward(self, model: nn.Module, x: torch.Tensor, idx: torch.Tensor, flipped: torch.Tensor,
                stored: bool) -> Any:
        """Model outputs for a batch: ``x`` is images (B, 3, H, W) or stored features when ``stored``;
        ``idx`` the dataset positions, ``flipped`` which items are mirrored."""
        raise NotImplementedError

    def objective(self, outputs: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss": total, other terms...}: the total is minimised, every term is logged per epoch."""
        raise NotImplementedError

    def before_step(self, model: nn.Module, step: int, total: int) -> None:
        """Called by the engine before each training step (``step`` of ``total``): schedules of the method's own,
        e.g. HashNet's rising tanh scale. Whatever it sets must be a function of ``step`` or live in the model's
        state, so a resumed run continues exactly."""

    def fit_features(self, model: nn.Module, features: torch.Tensor) -> dict[str, float]:
        """Closed-form methods: fit the model on the frozen store (views, N, ...) and return the logged terms."""
        raise NotImplementedError

    def lr_factor(self, step: int, total: int) -> float:
        """The base LR's multiplier at ``step`` of ``total``: the config's schedule unless the method keeps its own."""
        from .schedule import lr_factor

        return lr_factor(self.cfg, step, total)

    def state(self) -> dict:
        """RNG state of the objective (e.g. sampling miners), saved with each checkpoint for exact resume."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    # --- encoding ---------------------------------------------------------------------------------
    def encode(self, model: nn.Module, dataset: "HashDataset", batch_size: int, progress: bool,
               workers: int = 0, features: bool = False, rows: tuple[int, int] | None = None) -> Encoded:
        """Codes of ``dataset``, or of its ``rows`` [lo, hi) only (one shard of a sharded encode; ``indices`` stay
        dataset positions; batches start at ``lo``, so a shard's codes are those of a whole-set encode). With
        ``features`` also ``Encoded.features``, a float vector per image from the same forward pass (for
        re-ranking); a method without them (``gives_features`` False) is never asked."""
        raise NotImplementedError


PLUGINS = "deephash.methods"  # the package whose modules are the method plug-ins
_METHODS: dict[str, type[Method]] = {}
_discovered = False


def register_method(cls: type[Method]) -> type[Method]:
    """Register a Method subclass under ``cls.name`` (usable as a class decorator); a name is taken once."""
    if not cls.name:
        raise InvalidInputError(f"{cls.__name__} has no method name")
    if cls.name in _METHODS:
        raise InvalidInputError(f"method {cls.name!r} is already registered")
    _METHODS[cls.name] = cls
    return cls


def discover() -> None:
    """Import every plug-in module of ``PLUGINS`` once (importing one registers its methods)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(PLUGINS)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{PLUGINS}.{info.name}")


def get_method(name: str) -> type[Method]:
    discover()
    if name not in _METHODS:
        raise InvalidInputError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _METHODS[name]


def list_methods() -> list[str]:
    discover()
    return sorted(_METHODS)
