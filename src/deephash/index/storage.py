"""On-disk index: a directory of versioned files named by an atomically replaced manifest.

Layout of ``idx/``::

    manifest.json           format, bits, count, engine params, checkpoint, file names + sha256
    codes.<tag>.npy         (count, bits/8) uint8, np.packbits order, memory-mappable
    ids.<tag>.npy           (count,) int64
    meta.<tag>.sqlite       per-id path, labels and free-form JSON
    table-<engine>-<array>.<tag>.npy   the default engine's built search tables (MIH), when it has any
    features.<tag>.npy      optional: (count, dim) float16, one float vector per code, in the same order
                            (the model's pooled features, for re-ranking a Hamming search by cosine)
    .lock                   flock'ed by every writer for its whole load-modify-save (``index_lock``)

A save writes a fresh file set under a new tag (temp file, fsync, rename), then replaces
manifest.json in one rename, and only then deletes the data files neither the new nor the
previous manifest names. A process killed at any moment therefore leaves either the old or
the new manifest, each pointing at complete files. Load checks the manifest's fields, sizes
and checksums and refuses anything else.

Readers take no lock. A reader that read the previous manifest still finds its files (they are
kept for one more version); a reader that fell two versions behind finds a file missing and
re-reads the manifest once. Once loaded, an index holds its files open (the codes memory-mapped
or read, the SQLite file connected), so later deletions do not affect it.

Writers in different processes (or threads) are serialised by ``index_lock``: an exclusive
``fcntl.flock`` on ``<index>/.lock``, released by the kernel when its process dies, so a killed
writer never leaves a stale lock. A save back to the folder an index was loaded from also checks
that nobody saved a newer version meanwhile (else an update would be lost).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, DeephashError, IncompatibleError, InvalidInputError, MissingFileError
from ..utils.io import _fsync_dir, atomic_open, atomic_write, sha256_file

FORMAT = "deephash-index/1"
MANIFEST = "manifest.json"
LOCK_NAME = ".lock"
_DATA_FILE = re.compile(r"^(codes|ids|meta|features|table-[a-z0-9-]+)\.v\d+-[0-9a-f]+\.(npy|sqlite)$|^\..*\.tmp$")
TABLE_KEY = "table."  # files entries of the search tables: "table.<array>"
_OWN_FILE = re.compile(rf"{_DATA_FILE.pattern}|^{re.escape(LOCK_NAME)}$")
_META_COLUMNS = [("id", "INTEGER"), ("path", "TEXT"), ("labels", "TEXT"), ("extra", "TEXT")]
# Test hook: seconds to sleep after the data files are written, before the manifest swap.
PAUSE_ENV = "DEEPHASH_TEST_SAVE_PAUSE"
LOCK_TIMEOUT_ENV = "DEEPHASH_LOCK_TIMEOUT"
LOCK_TIMEOUT = 60.0  # seconds a writer waits for another one (DEEPHASH_LOCK_TIMEOUT overrides)


class IndexLockedError(DeephashError):
    """Another writer held the index folder's lock for longer than the timeout."""

    status = 409


class _FolderLock:
    """One process's hold on one folder's lock: a re-entrant thread lock around the flock'ed file."""

    def __init__(self):
        self.thread_lock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_FOLDER_LOCKS: dict[str, _FolderLock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


def lock_timeout() -> float:
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return LOCK_TIMEOUT if value is None else float(value)
    except ValueError:
        raise InvalidInputError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None


@contextlib.contextmanager
def index_lock(path, timeout: float | None = None):
    """Hold the exclusive writer lock of index folder ``path`` (created if missing) for the ``with`` block.

    Re-entrant within a thread; other threads and processes wait up to ``timeout`` seconds (default
    ``LOCK_TIMEOUT`` or ``$DEEPHASH_LOCK_TIMEOUT``), then get ``IndexLockedError``. The lock is an
    ``fcntl.flock`` on ``<path>/.lock``: the kernel drops it when the holder exits or is killed."""
    path = Path(path)
    timeout = lock_timeout() if timeout is None else float(timeout)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(path, "lock", e) from None
    key = os.path.realpath(path)
    with _FOLDER_LOCKS_GUARD:
        held = _FOLDER_LOCKS.setdefault(key, _FolderLock())
    deadline = time.monotonic() + timeout
    if not held.thread_lock.acquire(timeout=max(timeout, 0)):
        raise _locked(path, timeout)
    try:
        if held.depth == 0:
            held.fd = _flock(path, deadline, timeout)
        held.depth += 1
        try:
            yield path
        finally:
            held.depth -= 1
            if held.depth == 0:
                os.close(held.fd)  # releases the flock
                held.fd = None
    finally:
        held.thread_lock.release()


def _flock(path: Path, deadline: float, timeout: float) -> int:
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise _os_error(path, "lock", e) from None
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise _locked(path, timeout) from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.001)))
            delay = min(delay * 2, 0.1)


def _locked(path: Path, timeout: float) -> IndexLockedError:
    return IndexLockedError(f"index {path} is locked by another writer (waited {timeout:g} s; "
                            f"set {LOCK_TIMEOUT_ENV} to wait longer)")


def _os_error(path: Path, what: str, e: Exception) -> DeephashError:
    """An OSError (or SQLite error) while reading or writing an index folder, as a DeephashError naming it."""
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or "full" in reason:
        reason += " (free some space or write the index elsewhere)"
    return DeephashError(f"cannot {what} index {path}: {reason}")


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
            raise _vanished_or_corrupt(source, e) from None
        try:
            columns = [(row[1], row[2].upper()) for row in conn.execute("PRAGMA table_info(meta)")]
        except sqlite3.Error as e:
            conn.close()
            raise _vanished_or_corrupt(source, e) from None
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


def check_target(path: Path) -> None:
    """Refuse to write an index over a file, or into a non-empty folder that holds no index."""
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"cannot save index to {path}: it exists and is not a directory")
    if path.is_dir() and not (path / MANIFEST).exists():
        try:
            foreign = [p.name for p in path.iterdir() if not _OWN_FILE.match(p.name)]
        except OSError as e:
            raise _os_error(path, "save", e) from None
        if foreign:
            raise InvalidInputError(f"cannot save index to {path}: directory is not empty and holds no deephash index")


def _save_npy(path: Path, array: np.ndarray) -> dict:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _previous(path: Path) -> dict | None:
    """The manifest now in the folder, or None (none, or unreadable: a save may replace a broken index)."""
    if not (path / MANIFEST).exists():
        return None
    try:
        return read_manifest(path)
    except DeephashError:
        return None


def save_index(path, *, codes, ids, store: MetadataStore, header: dict, expect_version: int | None = None,
               tables: dict | None = None, features: np.ndarray | None = None) -> dict:
    """Write a complete new version of the index at `path` (a directory) atomically, under the folder's lock;
    returns the new manifest. ``expect_version``: the version this state was loaded from; a folder now at
    another version was changed by someone else and is not overwritten (IncompatibleError). ``tables``:
    ``{"engine": name, "params": {...}, "arrays": {name: array}}``, an engine's built search structure over
    exactly these codes, stored in files checksummed like the others (``load_tables`` reads them).
    ``features`` (count, dim) float16, one row per code, is written with them."""
    path = Path(path)
    check_target(path)
    with index_lock(path):
        old = _previous(path)
        current = None if old is None else old.get("version", 0)
        if expect_version is not None and current != expect_version:
            raise IncompatibleError(f"index {path} changed on disk since it was loaded (version {expect_version}, "
                                    f"now {current}): load it again and redo the change")
        version = (current or 0) + 1
        tag = f"v{version:06d}-{secrets.token_hex(4)}"
        meta_path = path / f"meta.{tag}.sqlite"
        tmp = path / f".meta.{tag}.sqlite.tmp"
        new = [path / f"codes.{tag}.npy", path / f"ids.{tag}.npy", meta_path, tmp, path / f"features.{tag}.npy"]
        arrays = (tables or {}).get("arrays", {})
        new += [path / f"table-{tables['engine']}-{name}.{tag}.npy" for name in arrays]
        try:
            files = {"codes": _save_npy(new[0], codes), "ids": _save_npy(new[1], ids)}
            if features is not None:
                files["features"] = _save_npy(new[4], np.asarray(features, np.float16))
            for name, target in zip(arrays, new[5:]):
                files[TABLE_KEY + name] = _save_npy(target, arrays[name])
            store.write(tmp)
            os.replace(tmp, meta_path)
            files["metadata"] = {"name": meta_path.name, "bytes": meta_path.stat().st_size,
                                 "sha256": sha256_file(meta_path)}
            _fsync_dir(path)
            if os.environ.get(PAUSE_ENV):
                time.sleep(float(os.environ[PAUSE_ENV]))
            manifest = {"format": FORMAT, "version": version, **header, "files": files}
            if tables:
                manifest["tables"] = {"engine": tables["engine"], "params": tables["params"]}
            atomic_write(path / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=2).encode()))
        except (OSError, sqlite3.Error) as e:
            for p in new:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
            raise _os_error(path, "save", e) from None
        keep = {f["name"] for f in files.values()}
        keep |= {f["name"] for f in (old or {}).get("files", {}).values()}  # readers of the previous version
        for p in path.iterdir():
            if _DATA_FILE.match(p.name) and p.name not in keep:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
        store.rebase(meta_path)
        return manifest


def _fail(mf: Path, what: str, value) -> CorruptFileError:
    return CorruptFileError(f"{mf} is corrupt: {what}, got {value!r}"[:400])


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest(mf: Path, m: dict) -> None:
    """Refuse a manifest whose fields have the wrong type or range, or whose file names leave the folder."""
    for key, optional in (("version", True), ("bits", False), ("count", False), ("next_id", True)):
        if key not in m and optional:
            continue
        if not _is_int(m.get(key)) or m[key] < 0:
            raise _fail(mf, f"{key} must be a non-negative integer", m.get(key))
    if not 8 <= m["bits"] <= 1024 or m["bits"] % 8:
        raise _fail(mf, "bits must be a multiple of 8 from 8 to 1024", m["bits"])
    code_bits = m.get("code_bits", m["bits"])
    if not _is_int(code_bits) or not 0 < code_bits <= m["bits"]:
        raise _fail(mf, f"code_bits must be an integer in 1..{m['bits']}", code_bits)
    engine = m.get("engine")
    if engine is not None and (not isinstance(engine, dict) or not isinstance(engine.get("default", ""), str)
                               or not isinstance(engine.get("settings") or {}, dict)):
        raise _fail(mf, "engine must be {'default': name, 'settings': {...}}", engine)
    if not isinstance(m.get("checkpoint"), (str, dict, type(None))):
        raise _fail(mf, "checkpoint must be a path or a dict", m.get("checkpoint"))
    names = m.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise _fail(mf, "class_names must be a list of strings", names)
    files = m.get("files")
    if not isinstance(files, dict):
        raise _fail(mf, "files must be a dict", files)
    tables = m.get("tables")
    if tables is not None and (not isinstance(tables, dict) or not isinstance(tables.get("engine"), str)
                               or not isinstance(tables.get("params"), dict)):
        raise _fail(mf, "tables must be {'engine': name, 'params': {...}}", tables)
    for key in ("codes", "ids", "metadata", "features", *(k for k in files if k.startswith(TABLE_KEY))):
        entry = files.get(key)
        if key == "features" and entry is None:
            continue
        if not isinstance(entry, dict):
            raise _fail(mf, f"files.{key} must be a dict", entry)
        name = entry.get("name")
        if not isinstance(name, str) or not _DATA_FILE.match(name) or name.startswith("."):
            raise _fail(mf, f"files.{key}.name must be a data file name inside the index folder", name)
        if not _is_int(entry.get("bytes")) or entry["bytes"] < 0:
            raise _fail(mf, f"files.{key}.bytes must be a non-negative integer", entry.get("bytes"))
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _fail(mf, f"files.{key}.sha256 must be 64 hex digits", digest)


def read_manifest(path: Path) -> dict:
    """The folder's manifest, its fields checked (types, ranges, file names inside the folder)."""
    mf = Path(path) / MANIFEST
    if not mf.is_file():
        raise MissingFileError(f"no deephash index at {path} (missing {MANIFEST})")
    try:
        manifest = json.loads(mf.read_bytes())
    except (ValueError, RecursionError) as e:
        raise CorruptFileError(f"{mf} is corrupt: {e}") from e
    except OSError as e:
        raise _os_error(Path(path), "read", e) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise IncompatibleError(f"{mf}: unknown index format {str(fmt)[:100]!r}")
    _check_manifest(mf, manifest)
    return manifest


class _Vanished(Exception):
    """A data file the manifest names is gone (a writer saved twice since the manifest was read)."""


def _vanished_or_corrupt(p: Path, e: Exception) -> Exception:
    if not p.exists():
        return _Vanished(p.name)
    return CorruptFileError(f"index {p.parent} is corrupt: {p.name} cannot be read: {e}")


def _verify(path: Path, entry: dict, checksum: bool) -> Path:
    p = path / entry["name"]
    try:
        size = p.stat().st_size
        if size != entry["bytes"]:
            raise CorruptFileError(f"index {path} is corrupt: {entry['name']} has {size} bytes, manifest says "
                                   f"{entry['bytes']}")
        if checksum and sha256_file(p) != entry["sha256"]:
            raise CorruptFileError(f"index {path} is corrupt: checksum mismatch in {entry['name']}")
    except FileNotFoundError:
        raise _Vanished(entry["name"]) from None
    except OSError as e:
        raise _vanished_or_corrupt(p, e) from None
    return p


def _open_files(path: Path, manifest: dict, mmap: bool, verify: bool):
    files, bits, count = manifest["files"], manifest["bits"], manifest["count"]
    paths = {key: _verify(path, files[key], verify) for key in ("codes", "ids", "metadata", "features")
             if key in files}
    try:
        codes = np.load(paths["codes"], mmap_mode="r" if mmap else None, allow_pickle=False)
        ids = np.load(paths["ids"], allow_pickle=False)
        features = (np.load(paths["features"], mmap_mode="r" if mmap else None, allow_pickle=False)
                    if "features" in paths else None)
    except FileNotFoundError as e:
        raise _Vanished(Path(e.filename or "").name) from None
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise CorruptFileError(f"index {path} is corrupt: {e}") from e
    if codes.dtype != np.uint8 or codes.shape != (count, bits // 8):
        raise CorruptFileError(f"index {path} is corrupt: codes of {codes.dtype} {codes.shape}, expected ({count}, {bits // 8}) uint8")
    if ids.dtype != np.int64 or ids.shape != (count,):
        raise CorruptFileError(f"index {path} is corrupt: ids of {ids.dtype} {ids.shape}, expected ({count},) int64")
    if features is not None and (features.dtype != np.float16 or features.ndim != 2 or len(features) != count
                                 or features.shape[1] < 1):
        raise CorruptFileError(f"index {path} is corrupt: features of {features.dtype} {features.shape}, expected "
                               f"({count}, dim) float16")
    return manifest, codes, ids, MetadataStore.open(paths["metadata"]), features


def load_tables(path, manifest: dict, mmap: bool = True, verify: bool = True):
    """The search tables a manifest names, as (engine, params, {array name: array}), or None when it names
    none; sizes and (``verify``) checksums checked as for the other files. A table file that is corrupt or
    gone raises CorruptFileError: the caller decides (``HammingIndex.load`` rebuilds the tables)."""
    tables = manifest.get("tables")
    if tables is None:
        return None
    path, arrays = Path(path), {}
    for key, entry in manifest["files"].items():
        if not key.startswith(TABLE_KEY):
            continue
        try:
            arrays[key[len(TABLE_KEY):]] = np.load(_verify(path, entry, verify), mmap_mode="r" if mmap else None,
                                                   allow_pickle=False)
        except _Vanished:
            raise CorruptFileError(f"index {path} is incomplete: missing {entry['name']}") from None
        except (ValueError, OSError, EOFError, SyntaxError) as e:
            raise CorruptFileError(f"index {path} is corrupt: {entry['name']}: {e}") from None
    return tables["engine"], tables["params"], arrays


def load_index(path, mmap: bool = True, verify: bool = True):
    """Return (manifest, codes, ids, MetadataStore, features or None) after checking the manifest, sizes,
    checksums and shapes. A file that vanished because writers saved twice meanwhile: the manifest is read again, once."""
    path = Path(path)
    manifest = read_manifest(path)
    for attempt in range(2):
        try:
            return _open_files(path, manifest, mmap, verify)
        except _Vanished as gone:
            again = read_manifest(path)
            if attempt or again == manifest:
                raise CorruptFileError(f"index {path} is incomplete: missing {gone}") from None
            manifest = again
    raise AssertionError("unreachable")
