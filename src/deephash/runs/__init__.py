"""Trained runs, below both the training engine (``deephash.train``) and the methods (``deephash.methods``).

- ``checkpoint``: the checkpoint file (atomic, sha256-verified, loaded without running code) and its formats;
- ``config``: ``TrainConfig``, one config for every method; ``schedule``: the LR schedule;
- ``method``: the ``Method`` contract and its registry, which finds the plug-ins by scanning ``deephash.methods``;
- ``run``: ``Run``, a checkpoint read once with its config, method and model, which training (``--resume``),
  encoding, retrieval and the service take; ``load_trained`` and ``encode``.
"""

from .checkpoint import CKPT_FORMAT, LEGACY_FORMATS, checkpoint_file, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .method import Encoded, Method, NoOptions, get_method, list_methods, register_method
from .run import Run, config_of, encode, load_trained, model_from_checkpoint, model_of

__all__ = ["CKPT_FORMAT", "LEGACY_FORMATS", "Encoded", "Method", "NoOptions", "Run", "TrainConfig", "checkpoint_file",
           "config_of", "encode", "get_method", "list_methods", "load_checkpoint", "load_trained",
           "model_from_checkpoint", "model_of", "register_method", "save_checkpoint"]
