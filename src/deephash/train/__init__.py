"""Training: ``train(cfg, dataset)`` for every method; checkpoints that resume exactly. The config
(``TrainConfig``) and the checkpoint file live below this engine, in ``deephash.runs``."""

from ..runs import TrainConfig
from .trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]
