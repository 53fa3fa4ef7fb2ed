"""Frozen-backbone features of all 60k CIFAR-10 images (train split then test split: the protocols' pool order),
computed once per (backbone, input size, mirror) and kept in the feature cache (``deephash.features``), so every
method of ``benchmarks/methods.py`` trains and is scored on the same stored features.

Run by hand (nice'd: it is the long part), e.g.
    nice -n 15 python benchmarks/method_features.py --backbone efficientnet_lite0 --size 160
    nice -n 15 python benchmarks/method_features.py --backbone efficientnet_lite2 --size 192 --mirror
    nice -n 15 python benchmarks/method_features.py --backbone efficientnet_lite2 --size 260 --train-blocks 1
(``--train-blocks K``: the maps of the frozen prefix, for recipes that train the last K blocks on them.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deephash.data import load_source  # noqa: E402
from deephash.features import backbone_features, prefix_maps  # noqa: E402
from deephash.models import create_model  # noqa: E402

DEFAULT_DATA = str(ROOT.parent / "shared/datasets/cifar10-jpg.tar.gz")


def cifar_pool(data: str = DEFAULT_DATA):
    """(splits, pool images (60k, 32, 32, 3) uint8, pool labels, boundary): train then test, as make_split pools."""
    splits = load_source(data, image_size=32, progress=False)
    train, test = splits["train"], splits["test"]
    return splits, np.concatenate([train.labels, test.labels]), len(train)


def backbone_model(backbone: str, size: int, train_blocks: int = 0):
    """The hashing model whose backbone makes the features (channels-last, as the training recipe runs it);
    with ``train_blocks`` its store keeps the maps of the frozen prefix instead of pooled features."""
    model = create_model(backbone, 48, size, weights="imagenet", hidden=1024, dropout=0.2).use_channels_last()
    return model.freeze_backbone(train_blocks) if train_blocks else model


def stored(model, images, mirror: bool, progress: bool = False, fast: bool = False) -> torch.Tensor:
    """The training engine's store for these images: prefix maps for a split model, else pooled features
    (``fast``: computed in ONNX Runtime, cached under their own key)."""
    if model.train_blocks:
        return prefix_maps(model, images, mirror=mirror, progress=progress, fast=fast)
    return backbone_features(model, images, mirror=mirror, progress=progress, fast=fast)


def pool_features(backbone: str, size: int, mirror: bool = False, data: str = DEFAULT_DATA,
                  progress: bool = True, train_blocks: int = 0, fast: bool = False) -> torch.Tensor:
    """(60k, ...) features: those of the train split's array then the test split's (each cached by content; the
    train split's entry is the one the training engine's frozen store reads under protocol dsh)."""
    splits, _, _ = cifar_pool(data)
    model = backbone_model(backbone, size, train_blocks)
    return torch.cat([stored(model, splits[s].images, mirror, progress, fast) for s in ("train", "test")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--mirror", action="store_true", help="also the mirrored images' features")
    ap.add_argument("--train-blocks", type=int, default=0,
                    help="store the maps before the last K blocks (recipes with train_blocks K)")
    ap.add_argument("--fast", action="store_true", help="pooled features in ONNX Runtime (methods.py --fast reads them)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    a = ap.parse_args(argv)
    for m in ([False, True] if a.mirror else [False]):
        t = time.perf_counter()
        f = pool_features(a.backbone, a.size, m, a.data, train_blocks=a.train_blocks, fast=a.fast)
        print(f"{a.backbone} {a.size}px mirror={m}: {tuple(f.shape)} in {(time.perf_counter() - t) / 60:.1f} min",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
