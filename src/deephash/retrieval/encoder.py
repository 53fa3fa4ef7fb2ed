"""A trained model as the retrieval layer sees it: images in, codes out, whatever the method."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..codes import CodesFile
from ..data import DecodedImages, HashDataset, load_image
from ..errors import DeephashError, InvalidInputError, MissingFileError
from ..runs import Encoded

if TYPE_CHECKING:
    from ..runs import Run

CHUNK = 64  # images decoded ahead of the model: one batch, so decoding the next overlaps running this one
#            (the size is chosen in docs/ingest.md)


class Encoder:
    """A trained run of any method (a ``deephash.runs.Run``, or its checkpoint opened once with
    ``deephash.runs.load_trained``) that encodes datasets, image files or pixel arrays.

    Image files are decoded by a pool of ``decode_threads`` threads (default: one per core; Pillow releases
    the GIL while decoding and resizing) a batch ahead of the model, so decoding overlaps inference. With
    ``fast`` (the default) a pooled model runs in ONNX Runtime when it is installed (codes equal to PyTorch's up
    to rounding: at least 99.9% of bits, mAP within 0.002; several times faster on CPU: ``deephash.models.runtime``)."""

    def __init__(self, checkpoint: "str | Path | Run", batch_size: int | None = None, workers: int = 0,
                 decode_threads: int | None = None, fast: bool = True):
        from ..runs import Run, load_trained

        self.trained = checkpoint if isinstance(checkpoint, Run) else load_trained(checkpoint)
        self.checkpoint = str(self.trained.checkpoint)
        self.method, self.model, self.config = self.trained.method, self.trained.model, self.trained.config
        self.class_names = list(self.trained.class_names)
        self.bits = int(self.model.bits)
        self.image_size = tuple(self.model.image_size)
        self.batch_size, self.workers = batch_size, workers  # None: the method's default batch
        self.decode_threads = decode_threads or os.cpu_count() or 1
        if fast:
            from ..models import HashingModel
            from ..models.runtime import onnx_runner

            if isinstance(self.model, HashingModel) and self.model.runtime is None:
                self.model.use_runtime(onnx_runner(self.model))
                from ..runs import get_method

                if self.model.runtime is not None and get_method(self.method).plain_encoder:
                    from .query_graph import remember  # later queries run this graph without torch

                    remember(self.checkpoint, self.model.runtime, self.model)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def dataset(self, data: str | None = None, split: str | None = None, protocol: str | None = None,
                progress: bool = False) -> HashDataset:
        """A split of a dataset at the size this model reads: by default the data and protocol it was trained
        on, and the ``database`` split (DSH protocols) or the first split (detection datasets for IAH)."""
        if self.method == "iah":
            from ..data import load_box_split

            if protocol is not None:
                raise InvalidInputError("an IAH model encodes a split of a dataset with boxes; it takes no protocol")
            return load_box_split(data or self.config.data, split, self.image_size[0])
        return self._dsh_split(data, protocol, progress).part(split or "database")

    def _dsh_split(self, data, protocol, progress):
        from ..data import load_split

        cfg = self.config
        return load_split(data or cfg.data, protocol or cfg.protocol, cfg.seed, self._stored_size(), progress=progress)

    def encode_split(self, data: str | None = None, split: str | None = None, protocol: str | None = None,
                     progress: bool = False, shard: tuple[int, int] | None = None) -> tuple[CodesFile, list]:
        """A dataset split's codes (defaults as for ``dataset``) as a codes file that records where they came
        from (so results can be drawn and scored later); also the (path, reason) of unreadable images.
        ``shard`` (i, n): only shard i of n (a contiguous run of whole batches), to be joined by
        ``codes.merge_shards``."""
        if self.method == "iah":
            ds = self.dataset(data, split, protocol, progress)
            meta = self._meta(split=split, data=str(data or self.config.data), image_size=self.image_size[0])
        else:
            split = split or "database"
            sp = self._dsh_split(data, protocol, progress)
            ds = sp.part(split)
            meta = self._meta(split=split, data=data or self.config.data, protocol=sp.protocol, seed=self.config.seed,
                              image_size=self._stored_size())
        return self._codes_file(ds, *self._encode_shard(ds, meta, shard, progress))

    def encode_folder(self, folder: str | Path, progress: bool = False,
                      shard: tuple[int, int] | None = None) -> tuple[CodesFile, list]:
        """Codes of every image under ``folder`` (recursively, any size or mode); unreadable files are skipped.
        ``shard`` as for ``encode_split`` (shards of one folder agree on its sorted file list)."""
        from ..data import FileDataset, list_images

        paths = list_images(folder)
        if not paths:
            raise MissingFileError(f"no image files under {folder}")
        ds = FileDataset(paths, None, self.class_names, self.image_size, name=Path(folder).name)
        meta = {**self._meta(), "images": str(folder)}
        if shard is not None:
            return self._codes_file(ds, *self._encode_shard(ds, meta, shard, progress), labels=False)
        enc = self.encode_images(paths, skip_unreadable=True, progress=progress)  # decoding overlaps the model
        if not len(enc.indices):
            raise InvalidInputError(f"none of the {len(paths)} images could be read (first error: "
                                    f"{enc.failures[0][1]})")
        return self._codes_file(ds, enc, meta, labels=False)

    def _encode_shard(self, ds: HashDataset, meta: dict, shard, progress: bool) -> tuple[Encoded, dict]:
        if shard is None:
            return self.encode_dataset(ds, progress), meta
        from ..distributed import shard_range
        from ..runs import encode, get_method

        index, count = shard
        batch = self.batch_size or get_method(self.method).encode_batch_size
        lo, hi = shard_range(len(ds), index, count, align=batch)
        enc = encode(self.trained, ds, self.batch_size, progress, self.workers, rows=(lo, hi))
        return enc, {**meta, "shard": {"index": index, "count": count, "rows": [lo, hi], "total": len(ds)}}

    def _meta(self, **extra) -> dict:
        return {"checkpoint": str(Path(self.checkpoint).resolve()), "method": self.method, "model": self.config.model,
                "bits": self.bits, **extra}

    def _stored_size(self) -> int:
        from ..runs import TrainConfig

        return TrainConfig.stored_size(self.config)

    def _codes_file(self, ds: HashDataset, enc: Encoded, meta: dict, labels: bool = True) -> tuple[CodesFile, list]:
        paths = [ds.paths[i] for i in enc.indices] if ds.paths is not None else None
        cf = CodesFile(enc.codes, self.bits, ids=enc.indices, paths=paths,
                       labels=ds.labels[enc.indices] if labels else None, class_names=ds.class_names, meta=meta,
                       category_codes=enc.category, probs=_float32(enc.probs), boxes=_float32(enc.boxes))
        return cf, enc.failures

    def encode_dataset(self, dataset: HashDataset, progress: bool = False, features: bool = False) -> Encoded:
        """Codes of a dataset; ``features``: also each image's feature vector (same forward pass)."""
        from ..runs import encode

        return encode(self.trained, dataset, self.batch_size, progress, self.workers, features=features)

    def encode_images(self, images, skip_unreadable: bool = False, progress: bool = False,
                      features: bool = False) -> Encoded:
        """``images``: paths or uint8 (H, W, 3) arrays of any size. Unreadable files raise, or with
        ``skip_unreadable`` are left out and listed in ``failures``. ``features``: also each image's feature
        vector (``Encoded.features``), from the same forward pass as its code."""
        from ..utils.progress import tqdm

        images = list(images)
        parts, keep, failures = [], [], []
        bar = tqdm(total=len(images), desc="encode", unit="img", disable=not progress, leave=False)
        for positions, pixels, bad in self._decoded(images, skip_unreadable):
            failures += bad
            bar.update(len(positions) + len(bad))
            if pixels:
                data = DecodedImages(np.stack(pixels), np.zeros((len(pixels), len(self.class_names)), np.uint8),
                                     self.class_names)
                enc = self.encode_dataset(data, features=features)
                parts.append(enc)
                keep.append(np.asarray(positions, np.int64)[enc.indices])
        if not parts:
            return Encoded(np.empty((0, -(-self.bits // 8)), np.uint8), np.empty(0, np.int64), failures)
        bar.close()
        enc = _concat(parts)
        enc.indices, enc.failures = np.concatenate(keep), failures
        return enc

    def _decoded(self, images: list, skip_unreadable: bool):
        """(positions, pixels, failures) per chunk of ``CHUNK`` images, in order, the next chunk decoding in the
        thread pool while the caller encodes this one."""
        with self._pool_lock:
            if self._pool is None and self.decode_threads > 1 and len(images) > 1:
                self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="deephash-decode")

        def submit(start):
            batch = images[start:start + CHUNK]
            if self._pool is None or len(images) == 1:
                return [_Done(_try_pixels, im, self.image_size) for im in batch]
            return [self._pool.submit(_try_pixels, im, self.image_size) for im in batch]

        pending = submit(0)
        for start in range(0, len(images), CHUNK):
            current, pending = pending, submit(start + CHUNK) if start + CHUNK < len(images) else []
            positions, pixels, failures = [], [], []
            for i, fut in enumerate(current, start):
                px, err = fut.result()
                if err is None:
                    positions.append(i)
                    pixels.append(px)
                elif skip_unreadable:
                    failures.append((str(images[i]), str(err)))
                else:
                    for f in pending:
                        f.cancel()
                    raise err
            yield positions, pixels, failures

    def close(self) -> None:
        """Stop the decoding threads (they also end with the process)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None


class _Done:
    """A decode run at once, with a future's ``result``/``cancel`` (one image: no thread hand-off)."""

    def __init__(self, fn, *args):
        self.value = fn(*args)

    def result(self):
        return self.value

    def cancel(self):
        return False


def _try_pixels(image, size):
    try:
        return _pixels(image, size), None
    except DeephashError as e:
        return None, e


def _concat(parts: list[Encoded]) -> Encoded:
    """One Encoded from consecutive chunks' (indices are per chunk: the caller sets them)."""
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return Encoded(cat("codes"), cat("indices"), [], cat("category"), cat("probs"), cat("boxes"), parts[0].bits,
                   cat("features"))


def _pixels(image, size: tuple[int, int]) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return load_image(image, size)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise InvalidInputError(f"an image array must be uint8 (H, W, 3), got {a.dtype} {a.shape}")
    if a.shape[:2] == tuple(size):
        return a
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR), np.uint8)



def _float32(a):
    return None if a is None else np.asarray(a, np.float32)
