"""Batch orders for training, seeded per epoch so a resumed run sees the same batches.

These are global batches: under torchrun every rank draws the same ones and takes a contiguous share of
each (``deephash.distributed.shard_range``, in ``Trainer.backward``), plain or class-balanced alike, so the
ranks together see exactly the batches of a single process."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A fresh random permutation per epoch, cut into batches (the last one dropped if < 2)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [perm[s:s + batch_size] for s in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


def balanced_batches(labels: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Class-balanced batches: each batch draws about batch_size/C images from every class, so
    every batch holds similar pairs for every class. For multi-label data an image is filed
    under each of its classes. As many batches as a plain epoch."""
    rng = np.random.default_rng([seed, epoch, 1])
    n, c = labels.shape
    members = [np.flatnonzero(labels[:, k]) for k in range(c)]
    members = [m for m in members if len(m)]
    if not members:
        raise InvalidInputError("class-balanced batches need labelled images; every label row is empty")
    if batch_size < len(members):
        raise InvalidInputError(f"class-balanced batches of {batch_size} cannot hold one image of each of "
                            f"{len(members)} classes; use a batch size ≥ {len(members)}")
    per = batch_size // len(members)
    cursors = [rng.permutation(m) for m in members]
    pos = [0] * len(members)
    out = []
    for _ in range(max(1, n // batch_size)):
        batch = []
        for k, m in enumerate(cursors):
            if pos[k] + per > len(m):
                cursors[k] = rng.permutation(members[k])
                pos[k] = 0
            batch.append(cursors[k][pos[k]:pos[k] + per])
            pos[k] += per
        out.append(np.unique(np.concatenate(batch)))  # a multi-label image drawn twice counts once
    return out
