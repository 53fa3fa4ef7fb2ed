"""ITQ, iterative quantization (Gong & Lazebnik, CVPR 2011): unsupervised codes from a frozen backbone.

The backbone's pooled features are centred and projected onto their top ``bits`` principal directions
(PCA), then an orthogonal rotation R is fitted to minimise the quantisation loss ||B - V R||^2 by
alternating B = sign(V R) and the orthogonal Procrustes solution for R (``iterations`` rounds, 50 in the
paper). Codes are sign((x - mean) W R): one linear map, so the fitted model is a ``HashingModel`` whose
hash layer holds W R and -mean W R, and a checkpoint of it encodes, loads and indexes like any DSH model.

Fitting needs no labels and no gradient steps: the training engine computes (or reads from the cache) the
backbone features of the training images and calls ``fit_features`` once (``closed_form``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ..runs.method import register_method
from .pooled import PooledMethod


@dataclass
class ITQOptions:
    iterations: int = 50  # alternations of B = sign(VR) and the Procrustes rotation


def pca(features: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), W (D, bits)): the top ``bits`` principal directions of ``features`` (N, D), largest variance
    first, each signed so that its largest-magnitude entry is positive (a deterministic choice)."""
    x = np.asarray(features, np.float64)
    n, d = x.shape
    if bits > d:
        raise InvalidInputError(f"ITQ makes at most {d} bits from {d}-dimensional features, got bits={bits}")
    if n <= bits:
        raise InvalidInputError(f"ITQ needs more images than bits to fit: {n} images for {bits} bits")
    mean = x.mean(0)
    xc = x - mean
    if n < d:  # fewer images than dimensions (a small photo folder): the (N, N) Gram matrix has the covariance's
        values, vectors = np.linalg.eigh(xc @ xc.T)  # non-zero spectrum, and is far cheaper to decompose
        w = xc.T @ vectors[:, np.argsort(values)[::-1][:bits]]
        w /= np.linalg.norm(w, axis=0)
    else:
        values, vectors = np.linalg.eigh(xc.T @ xc / (n - 1))
        w = vectors[:, np.argsort(values)[::-1][:bits]]
    w *= np.sign(w[np.abs(w).argmax(0), np.arange(bits)])
    return mean, w


def itq_rotation(v: np.ndarray, iterations: int = 50, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """(R (bits, bits) orthogonal, quantisation loss ||B - VR||^2 / N before each update and after the last)
    for PCA-projected data ``v`` (N, bits). R starts as a random orthogonal matrix drawn from ``seed``."""
    v = np.asarray(v, np.float64)
    bits = v.shape[1]
    r = np.linalg.svd(np.random.default_rng(seed).standard_normal((bits, bits)))[0]
    losses = []
    for _ in range(iterations):
        z = v @ r
        b = np.where(z >= 0, 1.0, -1.0)
        losses.append(float(((b - z) ** 2).sum() / len(v)))
        ub, _, vh = np.linalg.svd(b.T @ v)  # B'V = UB S UA'  ->  R = UA UB'
        r = vh.T @ ub.T
    z = v @ r
    losses.append(float(((np.where(z >= 0, 1.0, -1.0) - z) ** 2).sum() / len(v)))
    return r, losses


def fit_itq(features: np.ndarray, bits: int, iterations: int = 50, seed: int = 0):
    """(weight (bits, D), bias (bits,), losses): codes are sign(features @ weight.T + bias)."""
    mean, w = pca(features, bits)
    r, losses = itq_rotation((np.asarray(features, np.float64) - mean) @ w, iterations, seed)
    proj = w @ r
    return proj.T, -(mean @ proj), losses


@register_method
class ITQ(PooledMethod):
    name = "itq"
    Options = ITQOptions
    defaults = dict(bits=48, model="efficientnet_lite0", image_size=160, epochs=1,
                    batch_size=256, optimizer="sgd", lr=1e-3, weight_decay=0.0, schedule="constant", alpha=0.0,
                    out="runs/itq")
    closed_form = True
    needs_labels = False
    trains_tail = False  # fitted in closed form on pooled features: no gradient reaches a tail

    @classmethod
    def validate_config(cls, cfg) -> None:
        if cfg.model_kwargs.get("hidden"):
            raise InvalidInputError("ITQ is a linear map of the backbone's features: model_kwargs hidden must be 0")
        if cfg.method_options.get("iterations", 1) < 1:
            raise InvalidInputError(f"itq option iterations must be >= 1, got {cfg.method_options['iterations']}")

    def arrays(self, dataset, progress: bool):
        """Held at their stored size: the feature pass resizes each batch (no model-size copy of the set)."""
        from ..data import ArrayDataset

        return dataset if isinstance(dataset, ArrayDataset) else dataset.as_arrays(progress=progress)

    def freeze(self, model) -> None:
        model.freeze_backbone()  # ITQ never changes the backbone, whatever frozen_backbone says

    def make_loss(self, model, num_classes: int):
        return None  # no gradient steps: ``fit_features`` fits the hash layer

    def setup(self, model, data) -> None:
        """No dataset normalisation: the backbone's own (its pretrained weights expect it)."""

    def frozen_store(self, model, images_u8: np.ndarray, progress: bool) -> torch.Tensor:
        from ..features import backbone_features

        return backbone_features(model, images_u8, mirror=False, progress=progress,
                                 fast=self.cfg.fast_features)[None]

    def fit_features(self, model, features: torch.Tensor) -> dict:
        """Fit PCA + rotation on the stored features (views, N, D) (the original view) into the hash layer;
        returns the logged terms (the final quantisation loss and the first one, for the history)."""
        weight, bias, losses = fit_itq(features[0].cpu().numpy(), self.cfg.bits, self.options.iterations,
                                       self.cfg.seed)
        with torch.no_grad():
            model.hash.weight.copy_(torch.from_numpy(weight))
            model.hash.bias.copy_(torch.from_numpy(bias))
        return {"loss": losses[-1], "initial_loss": losses[0]}
