"""Training configuration: one dataclass for every method, settable from a YAML file and/or CLI flags.

``method`` picks the plug-in (``deephash.methods``, resolved through ``deephash.runs.method``); fields left at
None take that method's defaults (``Method.defaults``), and ``method_options`` holds the method's own settings,
checked against its options dataclass (unknown keys are refused) and stored complete."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import CorruptFileError, InvalidInputError, MissingFileError

if TYPE_CHECKING:
    from .run import Run


@dataclass
class TrainConfig:
    method: str = "dsh"
    method_options: dict = field(default_factory=dict)
    data: str = "digits"
    protocol: str | None = None
    seed: int = 0
    model: str = "dsh"
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = None
    init_from: str | None = None
    bits: int | None = None  # None: the method's default
    image_size: int | None = None  # None: the method's default
    data_size: int | None = None  # size images are decoded and held at (default image_size); see stored_size
    epochs: int | None = None  # None: the method's default
    iterations: int | None = None
    batch_size: int | None = None  # None: the method's default
    optimizer: str | None = None  # None: the method's default
    lr: float | None = None  # None: the method's default
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the method's default
    bias_lr_mult: float = 2.0
    hash_lr_mult: float = 1.0
    schedule: str | None = None  # None: the method's default
    milestones: list = field(default_factory=lambda: [60 / 70, 65 / 70])
    gamma: float = 0.1
    warmup_steps: int = 0
    margin: float | None = None
    alpha: float | None = None  # None: the method's default
    mirror: bool = True
    crop_pad: int = 0
    normalize: str = "auto"
    balanced: bool = False
    threads: int = 0
    channels_last: bool = False
    frozen_backbone: bool = False
    train_blocks: int = 0  # with frozen_backbone: the backbone's last blocks trained on stored maps
    bf16: bool = False  # bfloat16 autocast of the forward pass (the loss stays float32)
    mirror_average: bool = False  # codes from the mean of each image's and its mirror's outputs (test time)
    fast_features: bool = False  # with frozen_backbone: compute the store in ONNX Runtime or OpenVINO (models/runtime.py)
    device: str = "cpu"
    out: str | None = None  # None: the method's default

    # A resumed run must be the same run: only these may differ from the checkpoint's config.
    RESUME_MUTABLE = ("threads", "out", "channels_last", "device")
    OPTIMIZERS = ("sgd", "adam", "adamw")
    SCHEDULES = ("step", "cosine", "constant", "onecycle")

    def __post_init__(self):
        method = self.method_class()
        for k, v in method.defaults.items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        self.method_options = method.resolve_options(self.method_options)

    def method_class(self):
        from .method import get_method

        return get_method(self.method)

    def validate(self) -> "TrainConfig":
        from ..codes import check_code_length

        check_code_length(self.bits)
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise InvalidInputError(f"device must be cpu or cuda, got {self.device!r}")
        if self.optimizer not in self.OPTIMIZERS:
            raise InvalidInputError(f"optimizer must be one of {self.OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in self.SCHEDULES:
            raise InvalidInputError(f"schedule must be one of {self.SCHEDULES}, got {self.schedule!r}")
        if self.normalize not in ("auto", "dataset", "model"):
            raise InvalidInputError(f"normalize must be auto, dataset or model, got {self.normalize!r}")
        if self.data_size is not None and self.data_size < 1:
            raise InvalidInputError(f"data_size must be ≥ 1, got {self.data_size}")
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise InvalidInputError("batch_size must be ≥ 2 (pairs are formed inside a batch)")
        if self.iterations is not None and self.iterations < 1:
            raise InvalidInputError(f"iterations must be ≥ 1, got {self.iterations}")
        if not 0 <= self.seed < 2 ** 32:
            raise InvalidInputError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        if self.threads < 0:
            raise InvalidInputError(f"threads must be ≥ 0 (0 = all cores), got {self.threads}")
        self._check_numbers()
        if self.warmup_steps < 0:
            raise InvalidInputError(f"warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if not all(isinstance(m, (int, float)) and 0 <= m <= 1 for m in self.milestones):
            raise InvalidInputError(f"milestones must be fractions of the run between 0 and 1, got {self.milestones}")
        self._check_out()
        if self.frozen_backbone and self.crop_pad:
            raise InvalidInputError("frozen_backbone computes each image's features once, so it cannot take random "
                                "crops (crop_pad must be 0; mirroring is kept as a second stored view)")
        if self.train_blocks and not self.frozen_backbone:
            raise InvalidInputError("train_blocks trains the backbone's last blocks on stored maps of the frozen rest: "
                                    "it needs frozen_backbone (without it the whole backbone trains already)")
        if not isinstance(self.train_blocks, int) or self.train_blocks < 0:
            raise InvalidInputError(f"train_blocks must be a whole number ≥ 0, got {self.train_blocks!r}")
        if self.fast_features and not self.frozen_backbone:
            raise InvalidInputError("fast_features computes the frozen backbone's store in ONNX Runtime: "
                                    "it needs frozen_backbone")
        method = self.method_class()
        if self.train_blocks and not method.trains_tail:
            raise InvalidInputError(f"method {self.method} cannot use train_blocks (no trained tail reads its "
                                    "frozen store): leave it at 0")
        if self.mirror_average and not method.mirror_average:
            raise InvalidInputError(f"method {self.method} cannot use mirror_average: leave it off")
        if self.fast_features and not method.fast_store:
            raise InvalidInputError(f"method {self.method} cannot use fast_features (its frozen store is "
                                    "computed in PyTorch): leave it off")
        if not 0 <= self.crop_pad < self.image_size:
            raise InvalidInputError(f"crop_pad must be between 0 and image_size - 1 ({self.image_size - 1}), "
                                f"got {self.crop_pad}")
        self.method_class().validate_config(self)
        return self

    # finite-number settings: (rule, test); None is allowed where the method supplies the value
    NUMBER_RULES = {"lr": ("> 0", lambda v: v > 0), "weight_decay": ("≥ 0", lambda v: v >= 0),
                    "momentum": ("in [0, 1)", lambda v: 0 <= v < 1), "margin": ("> 0", lambda v: v > 0),
                    "alpha": ("≥ 0", lambda v: v >= 0), "gamma": ("> 0", lambda v: v > 0),
                    "bias_lr_mult": ("≥ 0", lambda v: v >= 0), "hash_lr_mult": ("≥ 0", lambda v: v >= 0)}
    OPTIONAL_NUMBERS = ("margin", "alpha")

    def _check_numbers(self) -> None:
        """Refuse a setting that is not a finite number in its range (NaN and infinity would train to a NaN loss)."""
        for name, (rule, test) in self.NUMBER_RULES.items():
            v = getattr(self, name)
            if v is None and name in self.OPTIONAL_NUMBERS:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not test(v):
                raise InvalidInputError(f"{name} must be a finite number {rule}, got {v!r}")

    def _check_out(self) -> None:
        """The run folder must be (or be creatable as) a folder: refused early, before any data is loaded."""
        out = Path(self.out)
        for p in (out, *out.parents):
            if p.exists():
                if not p.is_dir():
                    what = "is" if p == out else f"is inside {p}, which is"
                    raise InvalidInputError(f"out {self.out!r} {what} a file, not a folder")
                break

    def resume_conflicts(self, saved: dict) -> list[str]:
        """Settings that differ from a checkpoint's config and would make a resume inexact."""
        mine = self.to_dict()
        # a key the checkpoint predates had its default value
        defaults = TrainConfig(method=saved.get("method", "dsh")).to_dict()
        return [f"{k}: checkpoint {saved.get(k, defaults[k])!r}, now {mine[k]!r}" for k in mine
                if k not in self.RESUME_MUTABLE and saved.get(k, defaults[k]) != mine[k]]

    @staticmethod
    def stored_size(cfg: "TrainConfig | dict") -> int:
        """The size a run's dataset is decoded at: ``data_size`` when set, else the model's input size.
        A frozen backbone upsamples each batch itself, so CIFAR held at its native 32 px for a 160 px
        model keeps 50k images in 150 MB instead of 3.8 GB (other runs resize the set once at start)."""
        c = cfg if isinstance(cfg, dict) else cfg.to_dict()
        return c.get("data_size") or c["image_size"]

    def load_split(self, progress: bool = True):
        """This run's train / query / database sets, decoded at ``stored_size``."""
        from ..data import load_split

        return load_split(self.data, self.protocol, self.seed, self.stored_size(self), progress)

    @classmethod
    def assemble(cls, config: str | Path | None = None, flags: dict | None = None,
                 resume: "Run | None" = None) -> "TrainConfig":
        """A run's config from its layers, later ones winning: the checkpoint's own settings when resuming
        (``resume``, a ``deephash.runs.Run``; ``out`` = its folder), a YAML file, then explicit settings
        (``flags``; ``method_options`` and ``model_kwargs`` are merged key by key). Validated; whether the run
        can continue exactly with it is ``Run.check_resume``'s question."""
        base: dict = {}
        if resume is not None:
            base = {**resume.config.to_dict(), "out": str(resume.checkpoint.parent)}
        if config:
            base.update(cls.read_yaml(config))
        flags = dict(flags or {})
        for key in ("method_options", "model_kwargs"):
            if key in flags:
                flags[key] = {**(base.get(key) or {}), **flags[key]}
        return cls.from_dict({**base, **flags}).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InvalidInputError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)

    @staticmethod
    def read_yaml(path: str | Path) -> dict:
        """Only the keys the file sets (so they can be laid over another config)."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config file not found: {path}")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise CorruptFileError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(d, dict):
            raise CorruptFileError(f"{path}: expected a mapping of config keys")
        return d

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        d = cls.read_yaml(path)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)

