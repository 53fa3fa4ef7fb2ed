"""On-disk index: a directory of versioned files named by an atomically replaced manifest.

Layout of ``idx/``::

    manifest.json           format, bits, count, engine params, checkpoint, file names + sha256
    codes.<tag>.npy         (count, bits/8) uint8, np.packbits order, memory-mappable
    ids.<tag>.npy           (count,) int64
    meta.<tag>.sqlite       per-id path, labels and free-form JSON

A save writes a fresh file set under a new tag (temp file, fsync, rename), then replaces
manifest.json in one rename, and only then deletes files no manifest names. A process
killed at any moment therefore leaves either the old or the new manifest, each pointing
at complete files. Load checks sizes and checksums and refuses anything else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, IncompatibleError, InvalidInputError, MissingFileError
from ..utils.io import _fsync_dir, atomic_open, atomic_write, sha256_file

FORMAT = "deephash-index/1"
MANIFEST = "manifest.json"
_DATA_FILE = re.compile(r"^(codes|ids|meta)\.v\d+-[0-9a-f]+\.(npy|sqlite)$|^\..*\.tmp$")
# Test hook: seconds to sleep after the data files are written, before the manifest swap.
PAUSE_ENV = "DEEPHASH_TEST_SAVE_PAUSE"


_ABSENT = object()


class MetadataStore:
    """Per-id metadata: a read-only SQLite file plus in-memory changes since the last save."""

    def __init__(self, source: Path | None = None):
        self.source = source
        self.pending: dict[int, dict | None] = {}  # id -> metadata (None: no metadata)
        self.removed: set[int] = set()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self.source is None:
            return None
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.source}?mode=ro", uri=True, check_same_thread=False)
        return self._conn

    def add(self, ids: np.ndarray, metadata) -> None:
        for i, md in zip(ids.tolist(), metadata):
            self.pending[i] = md
            self.removed.discard(i)

    def remove(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.pending.pop(i, None)
            self.removed.add(i)

    def get(self, ids) -> list[dict | None]:
        out: list[dict | None] = []
        db = self._db()
        for i in ids:
            i = int(i)
            md = self.pending.get(i, _ABSENT)  # one look-up: a concurrent remove cannot slip in between
            if md is not _ABSENT:
                out.append(None if md is None else dict(md))
            elif i in self.removed or db is None:
                out.append(None)
            else:
                row = db.execute("SELECT path, labels, extra FROM meta WHERE id = ?", (i,)).fetchone()
                out.append(None if row is None else _row_to_dict(row))
        return out

    def write(self, path: Path) -> None:
        """Write the merged store to `path` (a fresh file) and fsync it."""
        if self.source is not None:
            shutil.copyfile(self.source, path)
        conn = sqlite3.connect(path)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY, path TEXT, labels TEXT, extra TEXT)")
            conn.executemany("DELETE FROM meta WHERE id = ?", ((i,) for i in self.removed))
            conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?, ?, ?)",
                (_dict_to_row(i, md) for i, md in self.pending.items() if md is not None),
            )
            conn.executemany("DELETE FROM meta WHERE id = ?", ((i,) for i, md in self.pending.items() if md is None))
            conn.commit()
        finally:
            conn.close()
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())

    def rebase(self, source: Path) -> None:
        """After a save: the new file holds everything. The old connection is dropped, not closed: a concurrent
        reader may still be using it (it closes when the last reference goes)."""
        self._conn = None
        self.source, self.pending, self.removed = source, {}, set()


def _dict_to_row(i: int, md: dict):
    extra = {k: v for k, v in md.items() if k not in ("path", "labels")}
    labels = md.get("labels")
    path = md.get("path")
    if isinstance(path, str) and not path.isascii():  # a file name that is not UTF-8: its bytes, as a BLOB
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            try:
                path = os.fsencode(path)
            except UnicodeEncodeError:  # a surrogate that no file name yields: kept visible, never a crash
                path = path.encode("utf-8", "surrogatepass")
    return (i, path, None if labels is None else json.dumps(labels), json.dumps(extra) if extra else None)


def _row_to_dict(row) -> dict:
    path, labels, extra = row
    out = json.loads(extra) if extra else {}
    if path is not None:
        out["path"] = os.fsdecode(path) if isinstance(path, bytes) else path
    if labels is not None:
        out["labels"] = json.loads(labels)
    return out


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"cannot save index to {path}: it exists and is not a directory")
    if path.is_dir() and not (path / MANIFEST).exists():
        foreign = [p.name for p in path.iterdir() if not _DATA_FILE.match(p.name)]
        if foreign:
            raise InvalidInputError(f"cannot save index to {path}: directory is not empty and holds no deephash index")


def _save_npy(path: Path, array: np.ndarray) -> dict:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def save_index(path, *, codes, ids, store: MetadataStore, header: dict) -> Path:
    """Write a complete new version of the index at `path` (a directory) atomically."""
    path = Path(path)
    _check_target(path)
    path.mkdir(parents=True, exist_ok=True)
    old = read_manifest(path) if (path / MANIFEST).exists() else None
    version = (old or {}).get("version", 0) + 1
    tag = f"v{version:06d}-{secrets.token_hex(4)}"
    files = {
        "codes": _save_npy(path / f"codes.{tag}.npy", codes),
        "ids": _save_npy(path / f"ids.{tag}.npy", ids),
    }
    meta_path = path / f"meta.{tag}.sqlite"
    tmp = path / f".meta.{tag}.sqlite.tmp"
    store.write(tmp)
    os.replace(tmp, meta_path)
    files["metadata"] = {"name": meta_path.name, "bytes": meta_path.stat().st_size, "sha256": sha256_file(meta_path)}
    _fsync_dir(path)
    if os.environ.get(PAUSE_ENV):
        time.sleep(float(os.environ[PAUSE_ENV]))
    manifest = {"format": FORMAT, "version": version, **header, "files": files}
    atomic_write(path / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=2).encode()))
    keep = {f["name"] for f in files.values()}
    for p in path.iterdir():
        if _DATA_FILE.match(p.name) and p.name not in keep:
            p.unlink(missing_ok=True)
    store.rebase(meta_path)
    return path


def read_manifest(path: Path) -> dict:
    mf = Path(path) / MANIFEST
    if not mf.is_file():
        raise MissingFileError(f"no deephash index at {path} (missing {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{mf} is corrupt: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleError(f"{mf}: unknown index format {manifest.get('format') if isinstance(manifest, dict) else None!r}")
    return manifest


def _verify(path: Path, entry: dict, checksum: bool) -> Path:
    p = path / entry["name"]
    if not p.is_file():
        raise CorruptFileError(f"index {path} is incomplete: missing {entry['name']}")
    size = p.stat().st_size
    if size != entry["bytes"]:
        raise CorruptFileError(f"index {path} is corrupt: {entry['name']} has {size} bytes, manifest says {entry['bytes']}")
    if checksum and sha256_file(p) != entry["sha256"]:
        raise CorruptFileError(f"index {path} is corrupt: checksum mismatch in {entry['name']}")
    return p


def load_index(path, mmap: bool = True, verify: bool = True):
    """Return (manifest, codes, ids, metadata path) after checking sizes, checksums and shapes."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        files = manifest["files"]
        bits, count = int(manifest["bits"]), int(manifest["count"])
        paths = {key: _verify(path, files[key], verify) for key in ("codes", "ids", "metadata")}
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(f"{path / MANIFEST} is incomplete: {e!r}") from e
    try:
        codes = np.load(paths["codes"], mmap_mode="r" if mmap else None, allow_pickle=False)
        ids = np.load(paths["ids"], allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptFileError(f"index {path} is corrupt: {e}") from e
    if codes.dtype != np.uint8 or codes.shape != (count, bits // 8):
        raise CorruptFileError(f"index {path} is corrupt: codes of {codes.dtype} {codes.shape}, expected ({count}, {bits // 8}) uint8")
    if ids.dtype != np.int64 or ids.shape != (count,):
        raise CorruptFileError(f"index {path} is corrupt: ids of {ids.dtype} {ids.shape}, expected ({count},) int64")
    return manifest, codes, ids, paths["metadata"]
