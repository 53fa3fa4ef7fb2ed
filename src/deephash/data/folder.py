"""Image-folder trees: ``<root>/<split>/<class>/*.jpg`` or ``<root>/<class>/*.jpg``,
as a directory or packed in a .tar/.tar.gz (decoded straight from the archive and cached)."""

from __future__ import annotations

import tarfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidInputError, MissingFileError
from ..utils.io import atomic_write
from .base import ArrayDataset, FileDataset, one_hot
from .cache import cache_dir, file_key
from .images import IMAGE_EXTENSIONS, decode_image, list_images

KNOWN_SPLITS = ("train", "test", "val", "query", "database", "db")


def _has_images(d: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir() if p.is_file())


def _class_tree(root: Path, image_size, name: str, class_names: list[str] | None = None) -> FileDataset:
    classes = class_names or sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, targets = [], []
    for c, cname in enumerate(classes):
        cdir = root / cname
        if not cdir.is_dir():
            continue
        for p in list_images(cdir):
            paths.append(p)
            targets.append(c)
    if not paths:
        raise InvalidInputError(f"no images found under {root} (expected {root}/<class>/*.jpg)")
    return FileDataset(paths, one_hot(targets, len(classes)), classes, image_size, name=name)


def load_image_folder(root: str | Path, image_size=None) -> dict[str, FileDataset]:
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"not a directory: {root}")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not subdirs:
        raise InvalidInputError(f"{root} has no class folders (expected {root}/<class>/*.jpg)")
    split_dirs = [d for d in subdirs if d.name.lower() in KNOWN_SPLITS and not _has_images(d)]
    if split_dirs:
        classes = sorted({c.name for d in split_dirs for c in d.iterdir() if c.is_dir()})
        return {d.name.lower(): _class_tree(d, image_size, f"{root.name}-{d.name}", classes) for d in split_dirs}
    return {"all": _class_tree(root, image_size, root.name)}


def load_image_folder_archive(path: str | Path, image_size=None, progress: bool = True) -> dict[str, ArrayDataset]:
    """Decode every image of an image-folder archive into memory, cached as .npz by file identity."""
    from ..utils.progress import tqdm

    path = Path(path)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    tag = "native" if image_size is None else f"{image_size[0]}x{image_size[1]}"
    cached = cache_dir() / f"{file_key(path)}-{tag}.npz"
    if cached.exists():
        try:
            return _load_cached(cached)
        except Exception:
            cached.unlink(missing_ok=True)
    entries: dict[str, list[tuple[str, str, bytes]]] = defaultdict(list)
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tqdm(tar, desc=f"read {path.name}", disable=not progress, unit=" files", leave=False):
                p = Path(m.name)
                if not m.isfile() or p.suffix.lower() not in IMAGE_EXTENSIONS or len(p.parts) < 2:
                    continue
                parts = p.parts
                if len(parts) >= 3 and parts[-3].lower() in KNOWN_SPLITS:
                    split, cls = parts[-3].lower(), parts[-2]
                else:
                    split, cls = "all", parts[-2]
                entries[split].append((cls, m.name, tar.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise CorruptFileError(f"cannot read image archive {path}: {e}") from None
    if not entries:
        raise InvalidInputError(f"no images found in archive {path} (expected <split>/<class>/*.jpg)")
    classes = sorted({cls for items in entries.values() for cls, _, _ in items})
    cindex = {c: i for i, c in enumerate(classes)}
    out = {}
    for split, items in entries.items():
        items.sort(key=lambda t: t[1])
        images = [decode_image(b, image_size, f"{path}:{n}") for _, n, b in
                  tqdm(items, desc=f"decode {split}", disable=not progress, leave=False)]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise InvalidInputError(f"{path}: images differ in size {sorted(shapes)[:3]}...; give an image size")
        labels = one_hot([cindex[c] for c, _, _ in items], len(classes))
        out[split] = ArrayDataset(np.stack(images), labels, classes, [n for _, n, _ in items],
                                  name=f"{path.name.split('.')[0]}-{split}")
    arrays = {}
    for split, ds in out.items():
        arrays[f"{split}/images"] = ds.images
        arrays[f"{split}/labels"] = ds.labels
        arrays[f"{split}/paths"] = np.array(ds.paths)
    arrays["classes"] = np.array(classes)
    atomic_write(cached, lambda fh: np.savez(fh, **arrays))
    return out


def _load_cached(cached: Path) -> dict[str, ArrayDataset]:
    with np.load(cached, allow_pickle=False) as z:
        classes = [str(c) for c in z["classes"]]
        splits = sorted({k.split("/")[0] for k in z.files if "/" in k})
        return {
            s: ArrayDataset(z[f"{s}/images"], z[f"{s}/labels"], classes, [str(p) for p in z[f"{s}/paths"]],
                            name=f"{cached.name.split('.')[0]}-{s}")
            for s in splits
        }
