"""Multi-label list files, the convention of public deep-hashing code:

    relative/path.jpg 0 1 0 1 ...      (one line per image, 0/1 over C classes)

Paths are relative to ``images_root`` (default: the list file's folder). Class names come
from a ``classes.txt`` beside the list (one name per line) when present.
A folder holding ``train.txt`` and ``test.txt`` (and optionally ``database.txt``) is read
as those splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MissingFileError
from .base import FileDataset

SPLIT_FILES = {"train": "train.txt", "test": "test.txt", "database": "database.txt"}


def read_list_file(list_path: str | Path, images_root: str | Path | None = None, image_size=None,
                   class_names: list[str] | None = None, check_files: bool = True) -> FileDataset:
    list_path = Path(list_path)
    if not list_path.is_file():
        raise MissingFileError(f"label list file not found: {list_path}")
    root = Path(images_root) if images_root is not None else list_path.parent
    paths, rows = [], []
    width = None
    # not UTF-8: file names are bytes on POSIX, so undecodable ones are kept as such (surrogate escapes)
    with open(list_path, encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2:
                raise InvalidInputError(f"{list_path}:{lineno}: expected 'path 0 1 ...', got {line[:80]!r}")
            try:
                row = [int(v) for v in parts[1:]]
            except ValueError:
                raise InvalidInputError(f"{list_path}:{lineno}: labels must be 0 or 1, got {' '.join(parts[1:])[:80]!r}") from None
            if any(v not in (0, 1) for v in row):
                raise InvalidInputError(f"{list_path}:{lineno}: labels must be 0 or 1, got {' '.join(parts[1:])[:80]!r}")
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise InvalidInputError(f"{list_path}:{lineno}: {len(row)} labels, but earlier lines have {width}")
            p = Path(parts[0])
            p = p if p.is_absolute() else root / p
            if check_files and not p.is_file():
                raise MissingFileError(f"{list_path}:{lineno}: image not found: {p}")
            paths.append(p)
            rows.append(row)
    if not rows:
        raise InvalidInputError(f"label list file {list_path} has no entries")
    if class_names is None:
        names_file = list_path.parent / "classes.txt"
        if names_file.is_file():
            try:
                text = names_file.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise InvalidInputError(f"{names_file}: class names must be UTF-8 text ({e})") from None
            class_names = [n.strip() for n in text.splitlines() if n.strip()]
        else:
            class_names = [f"class{i}" for i in range(width)]
    if len(class_names) != width:
        raise InvalidInputError(f"{list_path}: rows have {width} labels but there are {len(class_names)} class names")
    return FileDataset(paths, np.array(rows, dtype=np.uint8), class_names, image_size, name=list_path.stem)


def is_list_dir(path: Path) -> bool:
    return path.is_dir() and (path / SPLIT_FILES["train"]).is_file() and (path / SPLIT_FILES["test"]).is_file()


def load_list_dir(path: str | Path, images_root=None, image_size=None) -> dict[str, FileDataset]:
    path = Path(path)
    return {split: read_list_file(path / fname, images_root, image_size)
            for split, fname in SPLIT_FILES.items() if (path / fname).is_file()}
