"""Training: ``TrainConfig`` + ``train(cfg, dataset)`` for every method; checkpoints that resume exactly."""

from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig
from .trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_checkpoint", "model_from_checkpoint", "save_checkpoint",
           "train"]
