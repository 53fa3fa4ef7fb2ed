"""The official CIFAR-10 python distribution: cifar-10-python.tar.gz or cifar-10-batches-py/."""

from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidInputError
from .base import ArrayDataset, one_hot

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCHES = ["test_batch"]


def is_cifar_python(path: Path) -> bool:
    if path.is_dir():
        return (path / "batches.meta").exists() or (path / "cifar-10-batches-py" / "batches.meta").exists()
    return path.name.endswith((".tar.gz", ".tgz")) and "cifar-10-python" in path.name


_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a crafted pickle cannot call anything else."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR-10 batch)")
        return super().find_class(module, name)


def _unpickle(fh, what: str) -> dict:
    try:
        d = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as e:  # corrupt pickles raise many types
        raise CorruptFileError(f"cannot read CIFAR-10 file {what}: {e}") from None
    if not isinstance(d, dict):
        raise CorruptFileError(f"CIFAR-10 file {what} holds a {type(d).__name__}, not a batch dict")
    return d


def _decode_batch(d: dict, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except KeyError as e:
        raise InvalidInputError(f"CIFAR-10 file {what} lacks the key {e}") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise CorruptFileError(f"CIFAR-10 file {what}: unreadable data or labels ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise InvalidInputError(f"CIFAR-10 file {what}: data of shape {data.shape} with {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10_python(path: str | Path) -> dict[str, ArrayDataset]:
    """Returns {"train": 50k, "test": 10k} (or whatever the batches hold) as in-memory arrays."""
    path = Path(path)
    files: dict[str, dict] = {}
    if path.is_dir():
        root = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for name in ["batches.meta", *TRAIN_BATCHES, *TEST_BATCHES]:
            f = root / name
            if not f.exists():
                raise InvalidInputError(f"CIFAR-10 folder {root} lacks {name}")
            with open(f, "rb") as fh:
                files[name] = _unpickle(fh, str(f))
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                for m in tar.getmembers():
                    name = Path(m.name).name
                    if m.isfile() and name in ("batches.meta", *TRAIN_BATCHES, *TEST_BATCHES):
                        files[name] = _unpickle(tar.extractfile(m), f"{path}:{m.name}")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise CorruptFileError(f"cannot read CIFAR-10 archive {path}: {e}") from None
        missing = [n for n in ["batches.meta", *TRAIN_BATCHES, *TEST_BATCHES] if n not in files]
        if missing:
            raise InvalidInputError(f"CIFAR-10 archive {path} lacks {', '.join(missing)}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in files["batches.meta"].get(b"label_names", [])]
    if not names:
        raise InvalidInputError(f"{path}: batches.meta has no label_names")
    out = {}
    for split, batches in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
        parts = [_decode_batch(files[b], f"{path}:{b}") for b in batches]
        images = np.concatenate([p[0] for p in parts])
        targets = np.concatenate([p[1] for p in parts])
        if targets.max() >= len(names) or targets.min() < 0:
            raise InvalidInputError(f"{path}: labels outside 0..{len(names) - 1} in the {split} batches")
        out[split] = ArrayDataset(images, one_hot(targets, len(names)), names, name=f"cifar10-{split}")
    return out
