"""Backbone features of an image array, computed once and cached on disk by content.

A frozen backbone maps an image to the same features in every epoch, so training only the head on
stored features is far cheaper than running the backbone each step (on this project's 2-core CPU,
EfficientNet-Lite0 at 160 px runs at 80-170 images/s forward; a 1024-unit head with the DSH loss on
1280-d features trains at about 7,000 images/s). The cache key is the sha256 of what the features depend on: the backbone's
structure (its module repr) and weights and buffers, the input normalisation and size, the flip, the
pixels, the torch version and ``FEATURES_VERSION`` (raised whenever this module's resizing or feature
computation changes). A fine-tuned backbone or another image set never reads a stale entry; an
unreadable entry is recomputed. Entries are never evicted: delete ``$DEEPHASH_CACHE/features`` to
reclaim the space (about 5 KB per image for Lite0's pooled features, 10 KB for its prefix maps at 160 px
with one trained block).

These are the training engine's frozen-feature stores: ``stored_views`` (pooled features, cached as above;
or, for a model with ``train_blocks``, float16 maps of the frozen prefix, ``prefix_maps``) for DSH-style
models and ``feature_maps`` (whole conv maps, in memory only) for IAH. Under torchrun each rank computes a
contiguous share of the images and the shares are gathered on every rank (rank 0 writes the cache).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

from . import distributed
from .data.base import resize_batch
from .data.cache import cache_dir
from .models import HashingModel
from .utils.io import atomic_open
from .utils.progress import tqdm

log = logging.getLogger(__name__)

# Small batches: Lite0's activations at 160 px stay in cache (measured 235 vs 190 images/s for 8 vs 32
# images at 128 px).
BATCH = 16
FEATURES_VERSION = 1


def features_key(model: HashingModel, images_u8: np.ndarray, mirror: bool, runtime: str = "torch") -> str:
    h = hashlib.sha256()
    h.update(repr((FEATURES_VERSION, torch.__version__, tuple(model.image_size), mirror, images_u8.shape,
                   str(images_u8.dtype), type(model.backbone).__qualname__, repr(model.backbone))).encode())
    if runtime != "torch":  # another runtime's features differ by rounding: their own entries
        h.update(runtime.encode())
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    for t in (model.mean, model.std):
        h.update(t.detach().cpu().numpy().tobytes())
    h.update(np.ascontiguousarray(images_u8).data)
    return h.hexdigest()


def _cache_path(model: HashingModel, images_u8: np.ndarray, mirror: bool, runtime: str = "torch"):
    return cache_dir() / "features" / f"{features_key(model, images_u8, mirror, runtime)}.npy"


def maps_key(model: HashingModel, images_u8: np.ndarray, mirror: bool, runtime: str = "torch") -> str:
    """The cache key of the frozen prefix's maps (``HashingModel.stored_input`` with ``train_blocks``): only
    the prefix's weights count, so a model whose tail was fine-tuned still reads the maps it trained on."""
    fmap = model.backbone[0]
    prefix = [fmap.net._conv_stem, fmap.net._bn0, *fmap.net._blocks[:model.split_at]]
    h = hashlib.sha256()
    h.update(repr(("maps", FEATURES_VERSION, torch.__version__, tuple(model.image_size), mirror, images_u8.shape,
                   str(images_u8.dtype), model.split_at, [repr(m) for m in prefix])).encode())
    if runtime != "torch":
        h.update(runtime.encode())
    for i, m in enumerate(prefix):
        for name, t in sorted(m.state_dict().items()):
            h.update(f"{i}.{name}".encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    for t in (model.mean, model.std):
        h.update(t.detach().cpu().numpy().tobytes())
    h.update(np.ascontiguousarray(images_u8).data)
    return h.hexdigest()


def _read(path, n: int, ndim: int = 2) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed and replaced
    if stored.ndim != ndim or len(stored) != n:
        return None
    return torch.from_numpy(stored)


def stored_features(model: HashingModel, images_u8: np.ndarray, mirror: bool = False) -> torch.Tensor | None:
    """What a frozen-feature store holds for these images if an earlier run stored it (pooled features, or
    prefix maps for a model with ``train_blocks``), else None (nothing is computed or written)."""
    for runtime in _runtimes():  # PyTorch's entry first, then one a ``fast`` store wrote
        if getattr(model, "train_blocks", 0):
            found = _read(cache_dir() / "features" / f"{maps_key(model, images_u8, mirror, runtime)}.npy",
                          len(images_u8), 4)
        else:
            found = _read(_cache_path(model, images_u8, mirror, runtime), len(images_u8))
        if found is not None:
            return found
    return None


def _runtimes() -> list[str]:
    from .models.runtime import backend, version_name

    name = backend()
    return ["torch"] if name is None else ["torch", version_name(name)]


def backbone_features(model: HashingModel, images_u8: np.ndarray, mirror: bool = False, cache: bool = True,
                      progress: bool = True, fast: bool = False) -> torch.Tensor:
    """(N, D) float32 backbone features of uint8 (N, H, W, 3) images resized to the model's input size;
    ``mirror`` gives those of the horizontally flipped images (the mirror augmentation's second view).
    ``fast`` computes them in ONNX Runtime when it is installed (several times PyTorch's images/s for
    EfficientNet-Lite on CPU, equal up to rounding), cached under their own key."""
    fn, runtime = _compute_with(model, model.features, fast, "forward", 1)
    path = _cache_path(model, images_u8, mirror, runtime) if cache else None
    return _computed(model, fn, images_u8, mirror, path, 2, torch.float32, "backbone features", progress)


def prefix_maps(model: HashingModel, images_u8: np.ndarray, mirror: bool = False, cache: bool = True,
                progress: bool = True, fast: bool = False) -> torch.Tensor:
    """(N, C, h, w) float16 maps of the frozen prefix of a model with ``train_blocks`` (the input of its
    trainable tail), cached like the pooled features; float16 halves the store (about 34 KB per image for
    Lite2 at 260 px) and the tail widens each batch back to float32. ``fast``: as in ``backbone_features``."""
    fn, runtime = _compute_with(model, model.stored_input, fast, "prefix", 0)
    path = cache_dir() / "features" / f"{maps_key(model, images_u8, mirror, runtime)}.npy" if cache else None
    return _computed(model, fn, images_u8, mirror, path, 4, torch.float16, "prefix maps", progress)


def _compute_with(model, torch_fn, fast: bool, part: str, output: int):
    """(function, runtime name): ``torch_fn``, or with ``fast`` the ONNX graph of ``part`` in the installed
    runtime (its ``output``-th result), named so that each runtime's results get their own cache entries."""
    runner = None
    if fast:
        from .models.runtime import onnx_runner

        runner = onnx_runner(model, part=part)
        if runner is None:
            log.warning("fast features asked for, but no ONNX runtime could run this model (pip install "
                        "deephash[fast]): computing them in PyTorch, several times slower")
    if runner is None:
        return torch_fn, "torch"
    return (lambda x: runner(x)[output]), runner.version


@torch.inference_mode()
def _computed(model, fn, images_u8: np.ndarray, mirror: bool, path, ndim: int, dtype, desc: str,
              progress: bool) -> torch.Tensor:
    """``fn`` of every image resized to the model's size (read from ``path`` when stored there, else computed
    in small batches, sharded over torchrun ranks, and written by rank 0)."""
    stored = _read(path, len(images_u8), ndim) if path is not None else None
    # under torchrun every rank must agree to read (a rank whose cache misses would wait in the gather alone)
    if distributed.all_true(stored is not None):
        return stored
    was_training = model.training
    model.eval()
    images = torch.from_numpy(images_u8)

    def rows(lo: int, hi: int) -> torch.Tensor:
        chunks = []
        for s in tqdm(range(lo, hi, BATCH), desc=desc + (" (mirrored)" if mirror else ""), unit="batch",
                      disable=not progress, leave=False):
            x = resize_batch(images[s:min(s + BATCH, hi)].permute(0, 3, 1, 2).float().div_(255.0), model.image_size)
            chunks.append(fn((x.flip(-1) if mirror else x).to(model.mean.device)).to(dtype).cpu().contiguous())
        return torch.cat(chunks) if chunks else torch.empty((0,) * ndim, dtype=dtype)

    try:
        feats = distributed.sharded(len(images), rows, align=BATCH)  # each rank computes its share once
    finally:
        model.train(was_training)
    if path is not None and distributed.rank() == 0:
        with atomic_open(path) as fh:
            np.save(fh, feats.numpy(), allow_pickle=False)
    return feats


def stored_views(model: HashingModel, images_u8: np.ndarray, mirror: bool, progress: bool = True,
                 fast: bool = False) -> torch.Tensor:
    """The frozen-feature store of a DSH-style model: (views, N, D) pooled features, or (views, N, C, h, w)
    prefix maps for a model with ``train_blocks``; the original view and, when training mirrors, the mirrored
    one (each read from or written to the cache; ``fast``: computed in ONNX Runtime)."""
    fn = prefix_maps if getattr(model, "train_blocks", 0) else backbone_features
    return torch.stack([fn(model, images_u8, mirror=m, progress=progress, fast=fast)
                        for m in ([False, True] if mirror else [False])])


@torch.inference_mode()
def feature_maps(model, images_u8: np.ndarray, mirror: bool, progress: bool = True, batch: int = BATCH) -> torch.Tensor:
    """The frozen-feature store of an IAH model: its backbone's feature maps of every image (already at the
    model's input size), and of its mirror image when training mirrors: (views, N, C, h, w). Kept in memory
    only (maps are large); one conv pass per image for the whole run instead of one per epoch."""
    images = torch.from_numpy(images_u8)
    views = []
    for flip in ([False, True] if mirror else [False]):
        def rows(lo: int, hi: int, flip=flip) -> torch.Tensor:
            maps = []
            for s in tqdm(range(lo, hi, batch), desc="feature maps" + (" (mirrored)" if flip else ""), unit="batch",
                          disable=not progress, leave=False):
                x = images[s:min(s + batch, hi)].permute(0, 3, 1, 2).float().div_(255.0)
                maps.append(model.feature_map((x.flip(-1) if flip else x).to(model.mean.device)))
            return torch.cat(maps)

        views.append(distributed.sharded(len(images), rows, align=batch))
    return torch.stack(views)
