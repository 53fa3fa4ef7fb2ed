"""Images → packed codes with a trained model: batched, with progress; unreadable files are
skipped and counted rather than ending the run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .data import ArrayDataset, FileDataset, HashDataset
from .data.base import DecodedImages, resize_batch
from .errors import DeephashError, InvalidInputError
from .models import HashingModel
from .utils.progress import tqdm


@dataclass
class EncodeResult:
    codes: np.ndarray          # (n_ok, bits/8) uint8
    indices: np.ndarray        # dataset positions that were encoded
    failures: list[tuple[str, str]]  # (path, reason) of skipped items
    features: np.ndarray | None = None  # (n_ok, D) float16 pooled backbone features, when asked for


class _Tolerant(Dataset):
    """Wraps a FileDataset so one bad file yields None instead of an exception."""

    def __init__(self, ds: FileDataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        try:
            return i, self.ds[i][0], None
        except DeephashError as e:
            return i, None, str(e)


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, err) for i, x, err in items if x is None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    x = torch.stack([x for _, x in ok]) if ok else None
    return idx, x, bad


@torch.inference_mode()
def encode_dataset(model: HashingModel, dataset: HashDataset, batch_size: int = 256, workers: int = 0,
                   progress: bool = True, features: bool = False,
                   rows: tuple[int, int] | None = None) -> EncodeResult:
    """Codes of ``dataset``, or of its ``rows`` [lo, hi) (one shard of a sharded encode: batches run from ``lo``, so
    with ``lo`` a multiple of ``batch_size`` they are the batches, and the codes, of a whole-set encode).
    ``features``: also return each image's pooled backbone features (float16), from the same forward pass."""
    model.eval()
    device = model.mean.device
    size = tuple(model.image_size)
    lo, hi = rows or (0, len(dataset))
    chunks, feats_out, indices, failures = [], [], [], []
    if hi <= lo:
        return EncodeResult(np.empty((0, -(-model.bits // 8)), np.uint8), np.empty(0, np.int64), [],
                            np.empty((0, 0), np.float16) if features else None)

    def run(x):
        out = model.encode(x.to(device), features=features)
        if features:
            chunks.append(out[0])
            feats_out.append(out[1])
        else:
            chunks.append(out)

    def result(idx, fail):
        return EncodeResult(np.concatenate(chunks), idx, fail, np.concatenate(feats_out) if features else None)

    if (isinstance(dataset, ArrayDataset) and (model.backbone_frozen or getattr(model, "train_blocks", 0))
            and not isinstance(dataset, DecodedImages)):
        # A frozen backbone's features of these pixels may be stored already (the training images, which
        # are the database under protocol "dsh"): then only the head (and a trained tail) runs. Nothing new is
        # stored here.
        from .features import stored_features

        feats = stored_features(model, dataset.images)
        mirrored = (stored_features(model, dataset.images, mirror=True)
                    if feats is not None and model.mirror_average else None)
        if feats is not None and (mirrored is not None or not model.mirror_average):
            outs = [model.encode_stored(feats[s:min(s + batch_size, hi)].to(device), features,
                                        None if mirrored is None else mirrored[s:min(s + batch_size, hi)].to(device))
                    for s in range(lo, hi, batch_size)]
            return EncodeResult(np.concatenate([o[0] for o in outs]), np.arange(lo, hi), [],
                                np.concatenate([o[1] for o in outs]) if features else None)
    if isinstance(dataset, ArrayDataset):
        images = torch.from_numpy(dataset.images)
        for s in tqdm(range(lo, hi, batch_size), desc="encode", disable=not progress, leave=False):
            run(resize_batch(images[s:min(s + batch_size, hi)].permute(0, 3, 1, 2).float().div_(255.0), size))
        return result(np.arange(lo, hi), [])
    if not isinstance(dataset, FileDataset):
        raise InvalidInputError(f"cannot encode a {type(dataset).__name__}")
    ds = FileDataset(dataset.paths, dataset.labels, dataset.class_names, size, dataset.name)
    loader = DataLoader(Subset(_Tolerant(ds), range(lo, hi)), batch_size=batch_size, num_workers=workers,
                        collate_fn=_collate)
    for idx, x, bad in tqdm(loader, desc="encode", disable=not progress, leave=False):
        failures += [(ds.paths[i], err) for i, err in bad]
        if x is not None:
            run(x)
            indices.append(idx.numpy())
    if not chunks:
        raise InvalidInputError(f"none of the {hi - lo} images could be read (first error: {failures[0][1]})")
    return result(np.concatenate(indices), failures)
