"""The versioned file set of an index folder and the manifest that names it: save a complete new version
atomically, load and check one (fields, sizes, checksums, shapes). The layout and the guarantees are in the
package's docstring (``deephash.index.storage``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
from pathlib import Path

import numpy as np

from ...errors import (
    CorruptFileError,
    DeephashError,
    IncompatibleError,
    InvalidInputError,
    MissingFileError,
)
from ...utils.io import _fsync_dir, atomic_open, atomic_write, sha256_file
from .errors import Vanished, os_error, vanished_or_corrupt
from .locking import LOCK_NAME, index_lock
from .metadata import MetadataStore

FORMAT = "deephash-index/1"
MANIFEST = "manifest.json"
_DATA_FILE = re.compile(r"^(codes|ids|meta|features|table-[a-z0-9-]+)\.v\d+-[0-9a-f]+\.(npy|sqlite)$|^\..*\.tmp$")
TABLE_KEY = "table."  # files entries of the search tables: "table.<array>"
_OWN_FILE = re.compile(rf"{_DATA_FILE.pattern}|^{re.escape(LOCK_NAME)}$")


def check_target(path: Path) -> None:
    """Refuse to write an index over a file, or into a non-empty folder that holds no index."""
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"cannot save index to {path}: it exists and is not a directory")
    if path.is_dir() and not (path / MANIFEST).exists():
        try:
            foreign = [p.name for p in path.iterdir() if not _OWN_FILE.match(p.name)]
        except OSError as e:
            raise os_error(path, "save", e) from None
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
            manifest = {"format": FORMAT, "version": version, **header, "files": files}
            if tables:
                manifest["tables"] = {"engine": tables["engine"], "params": tables["params"]}
            atomic_write(path / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=2).encode()))
        except (OSError, sqlite3.Error) as e:
            for p in new:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
            raise os_error(path, "save", e) from None
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
        raise os_error(Path(path), "read", e) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise IncompatibleError(f"{mf}: unknown index format {str(fmt)[:100]!r}")
    _check_manifest(mf, manifest)
    return manifest


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
        raise Vanished(entry["name"]) from None
    except OSError as e:
        raise vanished_or_corrupt(p, e) from None
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
        raise Vanished(Path(e.filename or "").name) from None
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
        except Vanished:
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
        except Vanished as gone:
            again = read_manifest(path)
            if attempt or again == manifest:
                raise CorruptFileError(f"index {path} is incomplete: missing {gone}") from None
            manifest = again
    raise AssertionError("unreachable")
