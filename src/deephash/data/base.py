"""The common dataset interface: every source yields (image tensor, label vector).

Two storage forms behind one interface:
- ``ArrayDataset``: decoded uint8 images of one size held in memory (CIFAR, digits,
  cached image folders). Training slices whole batches from the array, which on a
  CPU is far faster than decoding item by item.
- ``FileDataset``: image files of any size and mode, decoded on demand and resized;
  used for encoding arbitrary folders and for large images.

Labels are always a multi-hot uint8 matrix (N, C); single-label data is one-hot.
"Similar" means label dot product > 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidInputError
from .images import load_image


def one_hot(targets: Sequence[int], num_classes: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    out = np.zeros((len(targets), num_classes), dtype=np.uint8)
    out[np.arange(len(targets)), targets] = 1
    return out


def to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) or (H,W,3) → float32 CHW in [0, 1], the input every model takes."""
    t = torch.from_numpy(np.ascontiguousarray(images_u8))
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    return t.float().div_(255.0)


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (N, 3, H, W) → (N, 3, *size), antialiased bilinear like PIL, so training and encoding
    see the same pixels whichever path resized them."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                                           antialias=True)


class HashDataset(Dataset):
    """Base class: labels (N, C) multi-hot, class names, optional source paths."""

    labels: np.ndarray
    class_names: list[str]
    paths: list[str] | None
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return self.labels.shape[1]

    @property
    def multilabel(self) -> bool:
        return bool((self.labels.sum(1) > 1).any())

    def image_u8(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, i: int):
        return to_tensor(self.image_u8(i)), torch.from_numpy(self.labels[i].astype(np.float32))

    def subset(self, indices) -> "HashDataset":
        raise NotImplementedError

    def _check(self) -> None:
        if len(self.labels) == 0:
            raise InvalidInputError(f"dataset {self.name!r} is empty")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.class_names):
            raise InvalidInputError(
                f"dataset {self.name!r}: labels of shape {self.labels.shape} do not match "
                f"{len(self.class_names)} class names"
            )


class ArrayDataset(HashDataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                 paths: list[str] | None = None, name: str = "array"):
        images = np.asarray(images)
        if images.ndim == 3:
            images = np.repeat(images[..., None], 3, axis=3)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise InvalidInputError(f"dataset {name!r}: images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise InvalidInputError(f"dataset {name!r}: {len(images)} images but {len(labels)} label rows")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.uint8)
        self.class_names = list(class_names)
        self.paths = list(paths) if paths is not None else None
        self.name = name
        self._check()

    @property
    def image_size(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    def image_u8(self, i: int) -> np.ndarray:
        return self.images[i]

    def subset(self, indices) -> "ArrayDataset":
        idx = np.asarray(indices, dtype=np.int64)
        paths = [self.paths[i] for i in idx] if self.paths is not None else None
        return ArrayDataset(self.images[idx], self.labels[idx], self.class_names, paths, self.name)

    def as_arrays(self) -> "ArrayDataset":
        return self


class DecodedImages(ArrayDataset):
    """Pixels just decoded from new files or uploads: an encoder skips the frozen-feature store look-up for them
    (it hashes the backbone's weights and every pixel, a cost paid for nothing on images never stored)."""


class FileDataset(HashDataset):
    """Images on disk, decoded on demand to RGB and resized to ``image_size`` (H, W).

    A file that cannot be decoded raises DeephashError naming it; encoders catch it per
    item to skip and count bad files instead of failing the whole run.
    """

    def __init__(self, paths: Sequence[str | Path], labels: np.ndarray | None, class_names: list[str],
                 image_size: tuple[int, int] | int | None = None, name: str = "files"):
        self.paths = [str(p) for p in paths]
        if labels is None:
            labels = np.zeros((len(self.paths), len(class_names)), dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.uint8)
        self.class_names = list(class_names)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = image_size
        self.name = name
        if len(self.paths) != len(self.labels):
            raise InvalidInputError(f"dataset {name!r}: {len(self.paths)} images but {len(self.labels)} label rows")
        if not self.paths:
            raise InvalidInputError(f"dataset {name!r} is empty")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.class_names):
            raise InvalidInputError(f"dataset {name!r}: labels do not match {len(self.class_names)} class names")

    def image_u8(self, i: int) -> np.ndarray:
        return load_image(self.paths[i], self.image_size)

    def subset(self, indices) -> "FileDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return FileDataset([self.paths[i] for i in idx], self.labels[idx], self.class_names,
                           self.image_size, self.name)

    def as_arrays(self, progress: bool = True) -> ArrayDataset:
        """Decode every image once (needs ``image_size``); bad files raise, naming the file."""
        if self.image_size is None:
            raise InvalidInputError(f"dataset {self.name!r}: an image size is needed to hold images in memory")
        from ..utils.progress import tqdm

        h, w = self.image_size
        out = np.empty((len(self), h, w, 3), dtype=np.uint8)
        for i in tqdm(range(len(self)), desc=f"decode {self.name}", disable=not progress, leave=False):
            out[i] = self.image_u8(i)
        return ArrayDataset(out, self.labels, self.class_names, self.paths, self.name)
