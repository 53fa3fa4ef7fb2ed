"""Hashing networks: ``create_model(name, bits=...)`` over one registry of models and backbones."""

from .activations import create_activation, list_activations, register_activation
from .dsh_net import DSHBackbone, WithinChannelLRN
from .hashing_model import HashingModel
from .iah import IAHNet, IAHOutput
from .registry import build_backbone, create_model, list_backbones, list_models, register_backbone, register_model
from .weights import efficientnet_lite0_weights, load_backbone_weights, load_matching

__all__ = ["DSHBackbone", "HashingModel", "IAHNet", "IAHOutput", "WithinChannelLRN", "build_backbone",
           "create_activation", "create_model", "efficientnet_lite0_weights", "list_activations",
           "list_backbones", "list_models", "load_backbone_weights", "load_matching", "register_activation",
           "register_backbone", "register_model"]
