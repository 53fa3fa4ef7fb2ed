"""Hashing methods as plug-ins of one training engine (``deephash.train.trainer.Trainer``).

The engine owns everything methods share: the run config (``TrainConfig``, with ``method`` and the
method's ``method_options``), device and rank, the uint8 training arrays, seeded epoch batches, the
optimiser (sgd/adam/adamw over the method's parameter groups), the LR schedule with warmup, mirror and
crop augmentation, the frozen-backbone feature store, an atomic checkpoint every epoch
(``deephash-train/2``) that resumes exactly, the progress bar and the per-epoch history.

A method (a ``Method`` subclass, registered with ``register_method``) supplies:

- ``Options`` (a dataclass of its own settings) and ``defaults`` (the TrainConfig values it starts from);
- ``build_model(num_classes)``: its network, from the config alone (also used to load checkpoints);
- ``prepare(data)``/``setup(model, data)``: per-run extras (IAH: proposals; DSH: input normalisation);
- ``parameter_groups(model)``;
- ``frozen_store(model, images)``: (views, N, ...) what a frozen backbone gives per image and mirror;
- ``forward(model, x, idx, flipped, stored)``: a batch of images (or stored features) to outputs;
- ``objective(outputs, labels)``: {"loss": total, terms...}, every term logged in the history;
- ``state()``/``load_state()``: its RNG state (e.g. sampling miners) for exact resume;
- ``encode(model, dataset, ..., rows=None)`` → ``Encoded`` (semantic codes; IAH also category codes, probs,
  boxes); ``rows`` [lo, hi) encodes one shard (``deephash encode --shard``, torchrun).

``dsh``, ``iah``, ``dpsh``, ``hashnet``, ``greedyhash``, ``csq`` (docs/methods.md) and ``itq`` (unsupervised,
fitted in closed form: ``closed_form``) are registered; another method is one more file.
``load_trained(path)`` opens any method's checkpoint (also the older ``deephash-dsh/1`` and
``deephash-iah/1`` files) and ``encode(trained, dataset)`` turns a dataset into codes.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import csq, dpsh, dsh, greedyhash, hashnet, iah, itq  # noqa: F401  (registers the methods)
from .base import Encoded, Method, NoOptions, Trained, get_method, list_methods, register_method

CKPT_FORMAT = "deephash-train/2"
LEGACY_FORMATS = {"deephash-dsh/1": "dsh", "deephash-iah/1": "iah"}


def checkpoint_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "last.ckpt" if path.is_dir() else path


def config_of(ckpt: dict, source=None):
    """The TrainConfig a checkpoint payload (any format) was trained with; a config that cannot be one is a
    CorruptFileError naming ``source`` (the checkpoint file)."""
    from ..errors import CorruptFileError, DeephashError
    from ..train.config import TrainConfig

    where = f"checkpoint {source}" if source is not None else "checkpoint"
    fmt = ckpt.get("format")
    if fmt not in (CKPT_FORMAT, *LEGACY_FORMATS):
        raise CorruptFileError(f"{where}: unknown checkpoint format {fmt!r}")
    try:
        if fmt == "deephash-iah/1":
            return TrainConfig.from_dict(iah.config_from_legacy(ckpt["config"]))
        return TrainConfig.from_dict(ckpt["config"])
    except (DeephashError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise CorruptFileError(f"{where} records an invalid training config: {_one_line(e)}") from None


def model_of(ckpt: dict, source=None):
    """(model in eval mode, TrainConfig) from a checkpoint payload of any format; weights that do not fit the
    recorded architecture are a CorruptFileError naming ``source``."""
    from ..errors import CorruptFileError, DeephashError

    cfg = config_of(ckpt, source)
    try:
        model = get_method(cfg.method)(cfg).build_model(len(ckpt["class_names"]))
        model.load_state_dict(ckpt["model"])
    except (DeephashError, TypeError, ValueError, KeyError, RuntimeError) as e:
        where = f"checkpoint {source}" if source is not None else "checkpoint"
        raise CorruptFileError(f"{where}: its model cannot be rebuilt: {_one_line(e)}") from None
    return model.eval(), cfg


def _one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def load_trained(path: str | os.PathLike) -> Trained:
    """Any method's checkpoint (a file or its run folder) as its model in eval mode, config and class names."""
    from ..train.checkpoint import load_checkpoint

    path = checkpoint_file(path)
    ckpt = load_checkpoint(path)
    model, cfg = model_of(ckpt, path)
    return Trained(cfg.method, model, cfg, list(ckpt["class_names"]), path)


def encode(trained, dataset, batch_size: int | None = None, progress: bool = True, workers: int = 0,
           features: bool = False, rows: tuple[int, int] | None = None) -> Encoded:
    """Codes of ``dataset`` (or of its ``rows`` [lo, hi)) with a ``Trained`` or a ``(model, config)`` pair (config:
    TrainConfig or its dict); ``batch_size`` defaults to the method's. ``features``: also each image's float
    feature vector (the method must support it: ``supports_features``)."""
    from ..train.config import TrainConfig

    model, cfg = (trained.model, trained.config) if isinstance(trained, Trained) else trained
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    method = get_method(cfg.method)(cfg)
    batch = batch_size or method.encode_batch_size
    kw = {} if rows is None else {"rows": rows}  # a method without sharded encoding omits the keyword
    if not features:
        return method.encode(model, dataset, batch, progress, workers, **kw)
    if not supports_features(cfg.method):
        from ..errors import IncompatibleError

        raise IncompatibleError(f"the {cfg.method} method gives no feature vectors to keep for re-ranking")
    return method.encode(model, dataset, batch, progress, workers, features=True, **kw)


def supports_features(method: str) -> bool:
    """Whether a method's ``encode`` can also return feature vectors (it takes the ``features`` keyword)."""
    import inspect

    return "features" in inspect.signature(get_method(method).encode).parameters


__all__ = ["CKPT_FORMAT", "Encoded", "Method", "NoOptions", "Trained", "config_of", "encode", "get_method",
           "list_methods", "load_trained", "model_of", "register_method", "supports_features"]
