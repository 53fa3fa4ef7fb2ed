"""Hashing networks: ``create_model(name, bits=...)`` over a registry of backbones."""

from .dsh_net import DSHBackbone, WithinChannelLRN
from .hashnet import HashNet
from .registry import create_model, list_models, load_backbone_weights, load_matching, register_model

__all__ = ["DSHBackbone", "HashNet", "WithinChannelLRN", "create_model", "list_models", "load_backbone_weights",
           "load_matching", "register_model"]
