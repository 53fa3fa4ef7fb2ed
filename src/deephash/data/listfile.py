"""Multi-label list files, the convention of public deep-hashing code:

    relative/path.jpg 0 1 0 1 ...      (one line per image, 0/1 over C classes)

Paths are relative to ``images_root`` (default: the list file's folder). Class names come
from a ``classes.txt`` beside the list (one name per line) when present.
A folder holding ``train.txt`` and ``test.txt`` (and optionally ``database.txt``) is read
as those splits. ``read_label_csv`` reads the simpler ``path,class name`` CSV (one class per image).
"""

from __future__ import annotations

import csv
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


def read_label_csv(csv_path: str | Path, images_root: str | Path | None = None, image_size=None,
                   check_files: bool = True) -> FileDataset:
    """``path,label`` rows (one class name per image; an optional ``path,label`` header; blank lines and lines
    starting with ``#`` skipped) as a single-label dataset; classes sorted by name. Paths are relative to
    ``images_root`` (default: the CSV's folder). An empty path or label, a path listed twice or a missing
    image is refused, naming its line."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MissingFileError(f"label file not found: {csv_path}")
    root = Path(images_root) if images_root is not None else csv_path.parent
    paths, names, seen = [], [], {}
    with open(csv_path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if not paths and [c.lower() for c in cells] == ["path", "label"]:
                continue
            if len(cells) != 2:
                raise InvalidInputError(f"{csv_path}:{lineno}: expected 'path,label', got {','.join(row)[:80]!r}")
            if not cells[0]:
                raise InvalidInputError(f"{csv_path}:{lineno}: empty path")
            if not cells[1]:
                raise InvalidInputError(f"{csv_path}:{lineno}: empty label for {cells[0]}")
            p = Path(cells[0])
            p = p if p.is_absolute() else root / p
            if check_files and not p.is_file():
                raise MissingFileError(f"{csv_path}:{lineno}: image not found: {p}")
            if str(p) in seen:
                raise InvalidInputError(f"{csv_path}:{lineno}: {cells[0]} is listed twice (first on line {seen[str(p)]})")
            seen[str(p)] = lineno
            paths.append(p)
            names.append(cells[1])
    if not paths:
        raise InvalidInputError(f"label file {csv_path} has no entries")
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    from .base import one_hot

    return FileDataset(paths, one_hot([index[n] for n in names], len(classes)), classes, image_size,
                       name=csv_path.stem)
