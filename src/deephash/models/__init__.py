"""Hashing networks: ``create_model(name, bits=...)`` over a registry of backbones."""

from .dsh_net import DSHBackbone, WithinChannelLRN
from .hashnet import HashNet
from .iah import IAHNet, IAHOutput, create_iah_model
from .registry import create_model, list_models, load_backbone_weights, load_matching, register_model

__all__ = ["DSHBackbone", "HashNet", "IAHNet", "IAHOutput", "WithinChannelLRN", "create_iah_model", "create_model",
           "list_models", "load_backbone_weights", "load_matching", "register_model"]
