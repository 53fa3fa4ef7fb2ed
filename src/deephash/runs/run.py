"""A trained run as one object: its checkpoint read and verified once, its config and method resolved, its model
built when first asked for. Training (resume), encoding, retrieval and the service all take a ``Run``."""

from __future__ import annotations

import os
from pathlib import Path

from .. import distributed
from ..errors import CorruptFileError, DeephashError, IncompatibleError
from .checkpoint import CKPT_FORMAT, LEGACY_FORMATS, TRAINING_KEYS, checkpoint_file, load_checkpoint
from .config import TrainConfig
from .method import Encoded, get_method


def _one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _where(source) -> str:
    return f"checkpoint {source}" if source is not None else "checkpoint"


def config_of(ckpt: dict, source=None) -> TrainConfig:
    """The TrainConfig a checkpoint payload (any format) was trained with; a config that cannot be one is a
    CorruptFileError naming ``source`` (the checkpoint file)."""
    fmt = ckpt.get("format")
    if fmt not in (CKPT_FORMAT, *LEGACY_FORMATS):
        raise CorruptFileError(f"{_where(source)}: unknown checkpoint format {fmt!r}")
    try:
        if fmt in LEGACY_FORMATS:
            return TrainConfig.from_dict(get_method(LEGACY_FORMATS[fmt]).legacy_config(ckpt["config"]))
        return TrainConfig.from_dict(ckpt["config"])
    except (DeephashError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise CorruptFileError(f"{_where(source)} records an invalid training config: {_one_line(e)}") from None


def model_of(ckpt: dict, source=None, cfg: TrainConfig | None = None):
    """(model in eval mode, TrainConfig) from a checkpoint payload of any format (``cfg``: its config, when
    already read); weights that do not fit the recorded architecture are a CorruptFileError naming ``source``."""
    cfg = cfg or config_of(ckpt, source)
    try:
        model = get_method(cfg.method)(cfg).build_model(len(ckpt["class_names"]))
        model.load_state_dict(ckpt["model"])
    except (DeephashError, TypeError, ValueError, KeyError, RuntimeError) as e:
        raise CorruptFileError(f"{_where(source)}: its model cannot be rebuilt: {_one_line(e)}") from None
    return model.eval(), cfg


class Run:
    """A checkpoint of any method (a file or its run folder; also the older ``deephash-dsh/1`` and
    ``deephash-iah/1`` formats). ``payload`` is the verified checkpoint, ``config`` its TrainConfig, ``method``
    the method's name, ``model`` the network in eval mode (built once, on first use)."""

    def __init__(self, checkpoint: Path, payload: dict):
        self.checkpoint = Path(checkpoint)
        self.payload = payload
        self.config = config_of(payload, self.checkpoint)
        self.method = self.config.method
        self.class_names = list(payload["class_names"])
        self._model = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        """The run at ``path``, its file read and its sha256 verified (the only read)."""
        path = checkpoint_file(path)
        return cls(path, load_checkpoint(path))

    @property
    def model(self):
        if self._model is None:
            self._model = model_of(self.payload, self.checkpoint, self.config)[0]
        return self._model

    def method_class(self):
        return get_method(self.method)

    def check_resume(self, cfg: TrainConfig) -> None:
        """Refuse to continue this run as ``cfg`` unless it continues exactly: a checkpoint with training state,
        written by as many processes as this run has (each restores its own RNG stream), of the same method and
        code length, with the same settings but ``TrainConfig.RESUME_MUTABLE``."""
        path, ckpt = self.checkpoint, self.payload
        if ckpt["format"] == "deephash-iah/1":
            raise IncompatibleError(f"{path}: an IAH checkpoint from before runs could resume (no optimiser state); "
                                    "train again")
        if missing := [k for k in TRAINING_KEYS if k not in ckpt]:
            raise CorruptFileError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
        saved, now = ckpt.get("world_size", 1), distributed.world_size()
        if saved != now:
            raise IncompatibleError(f"{path} was trained by {saved} process(es) (torchrun world size {saved}) but this "
                                    f"run has {now}; resume it with the same number of processes "
                                    f"(torchrun --nnodes ... --nproc-per-node ... giving {saved} in all)")
        if self.method != cfg.method:
            raise IncompatibleError(f"{path} was trained with method {self.method!r}, this run is {cfg.method!r}")
        if ckpt["bits"] != cfg.bits:
            raise IncompatibleError(f"{path} holds a {ckpt['bits']}-bit model but this run is configured for "
                                    f"{cfg.bits} bits")
        if conflicts := cfg.resume_conflicts(ckpt["config"]):
            raise IncompatibleError(f"cannot resume {path} exactly with changed settings: " + "; ".join(conflicts))


def load_trained(path: str | os.PathLike) -> Run:
    """A run opened to encode with: its model built now (a checkpoint whose weights do not fit fails here), the
    payload's copy of the weights and its optimiser state let go."""
    run = Run.open(path)
    run.model
    run.payload = {k: v for k, v in run.payload.items() if k not in ("model", "optimizer")}
    return run


def model_from_checkpoint(ckpt: dict | str | os.PathLike):
    """The model (any method) a checkpoint payload, file or run folder holds, in eval mode."""
    return model_of(ckpt)[0] if isinstance(ckpt, dict) else Run.open(ckpt).model


def encode(trained, dataset, batch_size: int | None = None, progress: bool = True, workers: int = 0,
           features: bool = False, rows: tuple[int, int] | None = None) -> Encoded:
    """Codes of ``dataset`` (or of its ``rows`` [lo, hi)) with a ``Run`` or a ``(model, config)`` pair (config:
    TrainConfig or its dict); ``batch_size`` defaults to the method's. ``features``: also each image's float
    feature vector (the method must give them: ``Method.gives_features``)."""
    model, cfg = (trained.model, trained.config) if isinstance(trained, Run) else trained
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    method = get_method(cfg.method)
    if features and not method.gives_features:
        raise IncompatibleError(f"the {cfg.method} method gives no feature vectors to keep for re-ranking")
    return method(cfg).encode(model, dataset, batch_size or method.encode_batch_size, progress, workers,
                              features=features, rows=rows)

