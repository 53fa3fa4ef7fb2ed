"""Per-id metadata of an index (path, labels, free-form fields) in one SQLite file per saved version.

A ``MetadataStore`` reads the saved file (read-only, connected once so a later deletion cannot pull it away) and
keeps the changes made since in memory; a save writes the merged table to a fresh file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from ...errors import CorruptFileError
from .errors import vanished_or_corrupt

_META_COLUMNS = [("id", "INTEGER"), ("path", "TEXT"), ("labels", "TEXT"), ("extra", "TEXT")]
_ABSENT = object()


class MetadataStore:
    """Per-id metadata: a read-only SQLite file plus in-memory changes since the last save."""

    def __init__(self, source: Path | None = None, conn: sqlite3.Connection | None = None):
        self.source = source
        self.pending: dict[int, dict | None] = {}  # id -> metadata (None: no metadata)
        self.removed: set[int] = set()
        self._conn = conn

    @classmethod
    def open(cls, source: Path) -> "MetadataStore":
        """Connect to a saved metadata file now (the open file outlives a later deletion) and check its schema."""
        try:
            conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise vanished_or_corrupt(source, e) from None
        try:
            columns = [(row[1], row[2].upper()) for row in conn.execute("PRAGMA table_info(meta)")]
        except sqlite3.Error as e:
            conn.close()
            raise vanished_or_corrupt(source, e) from None
        if columns != _META_COLUMNS:
            conn.close()
            raise CorruptFileError(f"index {source.parent} is corrupt: {source.name} is not a deephash metadata "
                                   f"database (table meta has columns {columns}, expected {_META_COLUMNS})")
        return cls(source, conn)

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
        """Metadata per id, in order; the saved file is read in one query per 500 ids (a search asks for many)."""
        ids = [int(i) for i in ids]
        out: list[dict | None] = [None] * len(ids)
        stored: dict[int, list[int]] = {}  # id -> positions to fill from the saved file
        for n, i in enumerate(ids):
            md = self.pending.get(i, _ABSENT)  # one look-up: a concurrent remove cannot slip in between
            if md is not _ABSENT:
                out[n] = None if md is None else dict(md)
            elif i not in self.removed:
                stored.setdefault(i, []).append(n)
        try:
            db = self._db() if stored else None
            keys = list(stored)
            for start in range(0, len(keys) if db is not None else 0, 500):
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT id, path, labels, extra FROM meta WHERE id IN ({','.join('?' * len(chunk))})",
                                  chunk).fetchall()
                for row in rows:
                    for n in stored[row[0]]:
                        out[n] = _row_to_dict(row[1:])
        except (sqlite3.Error, ValueError, TypeError, AttributeError) as e:
            raise CorruptFileError(f"index {self.source.parent} is corrupt: cannot read metadata from "
                                   f"{self.source.name}: {e}") from None
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
        reader may still be using it (it closes when the last reference goes). The new file is opened now, so
        that a later save by another process, which may delete it, cannot pull it away."""
        self._conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, check_same_thread=False)
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
