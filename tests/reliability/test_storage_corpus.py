"""Fault corpus for index folders: edited manifests, altered or missing data files, write errors, a held lock.

Every case runs the real CLI in-process and asserts exit status 2, one ``error:`` line naming the culprit,
no traceback, and an index folder byte-for-byte as it was."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.errors import DeephashError
from deephash.index import CategoryIndex, HammingIndex, storage
from deephash.utils.io import sha256_file

runner = CliRunner()
BITS = 32


def codes_file(path: Path, n: int, start: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    CodesFile(codes=rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8), bits=BITS,
              ids=np.arange(start, start + n), paths=[f"img/{start + i}.png" for i in range(n)]).save(path)
    return path


@pytest.fixture
def idx(tmp_path):
    """A small DSH index folder and a codes file with new ids to add to it."""
    codes_file(tmp_path / "base.npz", 30, 0, 0)
    codes_file(tmp_path / "more.npz", 5, 100, 1)
    r = runner.invoke(app, ["index", "build", "--codes", str(tmp_path / "base.npz"), "--out", str(tmp_path / "idx")])
    assert r.exit_code == 0, r.output
    return tmp_path / "idx"


def folder_hash(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path: Path, m: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(m))


def set_field(path: Path, dotted: str, value) -> None:
    m = manifest(path)
    *parents, last = dotted.split(".")
    target = m
    for key in parents:
        target = target[key]
    target[last] = value
    write_manifest(path, m)


def replace_data(path: Path, key: str, data: bytes) -> None:
    """Replace a data file and update its size and checksum in the manifest (a checksum cannot catch this)."""
    m = manifest(path)
    f = path / m["files"][key]["name"]
    f.write_bytes(data)
    m["files"][key].update(bytes=len(data), sha256=sha256_file(f))
    write_manifest(path, m)


def expect_refusal(args: list[str], folder: Path, culprit: str, before: dict | None = None) -> str:
    before = folder_hash(folder) if before is None else before
    r = runner.invoke(app, args)
    out = r.output  # stdout and stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2, out
    assert len(errors) == 1 and culprit in errors[0], out
    assert "Traceback" not in out and r.exception is None or isinstance(r.exception, SystemExit), out
    assert folder_hash(folder) == before
    return errors[0]


def search_args(idx: Path) -> list[str]:
    return ["search", "--index", str(idx), "--codes", str(idx.parent / "more.npz")]


def add_args(idx: Path) -> list[str]:
    return ["index", "add", "--index", str(idx), "--codes", str(idx.parent / "more.npz"), "--keep-ids"]


MANIFEST_EDITS = {
    "engine is a number": ("engine", 5),
    "engine default unknown": ("engine.default", "nope"),
    "engine settings wrong": ("engine.settings", {"mih": {"m": "four"}}),
    "next_id is a string": ("next_id", "12"),
    "code_bits is a string": ("code_bits", "32"),
    "code_bits above bits": ("code_bits", 4096),
    "count is a string": ("count", "30"),
    "count is negative": ("count", -1),
    "bits is a float": ("bits", 32.0),
    "bits not a multiple of 8": ("bits", 12),
    "files is a list": ("files", []),
    "codes bytes is a string": ("files.codes.bytes", "100"),
    "sha256 not hex": ("files.ids.sha256", "z" * 64),
    "class_names not strings": ("class_names", [1, 2]),
    "checkpoint is a number": ("checkpoint", 7),
    "count disagrees with arrays": ("count", 31),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_edited_manifest_is_refused(idx, case):
    key, value = MANIFEST_EDITS[case]
    set_field(idx, key, value)
    expect_refusal(add_args(idx), idx, "idx")
    expect_refusal(["index", "info", "--index", str(idx)], idx, "idx")


@pytest.mark.parametrize("key,where", [("codes", "../outside.npy"), ("ids", "absolute"),
                                       ("metadata", "sub/meta.v000001-00000000.sqlite")])
def test_manifest_naming_a_file_outside_the_folder_is_refused(idx, key, where):
    """The outside file is a faithful copy with the right size and checksum: only the name gives it away."""
    m = manifest(idx)
    inside = idx / m["files"][key]["name"]
    outside = idx.parent / f"outside-{key}" if where == "absolute" else idx / where
    outside.parent.mkdir(exist_ok=True)
    outside.write_bytes(inside.read_bytes())
    m["files"][key]["name"] = str(outside) if where == "absolute" else where
    write_manifest(idx, m)
    expect_refusal(add_args(idx), idx, f"{idx / 'manifest.json'} is corrupt: files.{key}.name")
    expect_refusal(search_args(idx), idx, "manifest.json")


@pytest.mark.parametrize("text", ['{"format": "deephash-index/1", "bits": 32', "[1, 2]", "\xff\xfe", ""])
def test_unparsable_manifest_is_refused(idx, text):
    (idx / "manifest.json").write_bytes(text.encode("latin-1"))
    expect_refusal(add_args(idx), idx, "manifest.json")


def test_garbage_sqlite_with_updated_checksum_is_refused(idx):
    replace_data(idx, "metadata", os.urandom(4096))
    expect_refusal(add_args(idx), idx, "meta.")
    expect_refusal(search_args(idx), idx, "meta.")


def test_wrong_schema_sqlite_with_updated_checksum_is_refused(idx):
    other = idx.parent / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE meta (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO meta VALUES (1, 'x')")
    replace_data(idx, "metadata", other.read_bytes())
    expect_refusal(add_args(idx), idx, "not a deephash metadata database")


def test_sqlite_with_bad_rows_and_updated_checksum_is_refused_at_search(idx):
    m = manifest(idx)
    db = idx.parent / "bad.sqlite"
    db.write_bytes((idx / m["files"]["metadata"]["name"]).read_bytes())
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET labels = '{not json'")
    replace_data(idx, "metadata", db.read_bytes())
    expect_refusal(search_args(idx), idx, "meta.")


@pytest.mark.parametrize("key", ["codes", "ids", "metadata"])
def test_truncated_deleted_or_altered_data_file_is_refused(idx, key):
    f = idx / manifest(idx)["files"][key]["name"]
    data = f.read_bytes()
    f.write_bytes(data[:-7])
    expect_refusal(add_args(idx), idx, f.name)
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    expect_refusal(add_args(idx), idx, "checksum mismatch")
    f.unlink()
    expect_refusal(add_args(idx), idx, f"missing {f.name}")


@pytest.mark.parametrize("stage,code", [("codes", errno.EFBIG), ("metadata", errno.ENOSPC),
                                        ("manifest", errno.EFBIG), ("sqlite", None)])
def test_write_error_during_add_keeps_the_index(idx, monkeypatch, stage, code):
    def fail(*args, **kwargs):
        if code is None:
            raise sqlite3.OperationalError("database or disk is full")
        raise OSError(code, os.strerror(code))

    if stage == "codes":
        monkeypatch.setattr(storage.manifest, "_save_npy", fail)
    elif stage in ("metadata", "sqlite"):
        monkeypatch.setattr(storage.MetadataStore, "write", fail)
    else:
        real = storage.manifest.atomic_write
        monkeypatch.setattr(storage.manifest, "atomic_write", lambda p, w: fail() if p.name == "manifest.json" else real(p, w))
    line = expect_refusal(add_args(idx), idx, f"cannot save index {idx}")
    assert "space" in line or "large" in line or "full" in line
    assert len(HammingIndex.load(idx)) == 30


def test_add_waits_for_the_lock_then_times_out_clearly(idx):
    with open(idx / ".lock", "a+") as fh:  # another writer (a separate open file: flock excludes it)
        fcntl.flock(fh, fcntl.LOCK_EX)
        line = expect_refusal(add_args(idx) + ["--lock-timeout", "0.3"], idx,
                              f"index {idx} is locked by another writer")
        assert "DEEPHASH_LOCK_TIMEOUT" in line
        expect_refusal(["index", "remove", "--index", str(idx), "--ids", "1", "--lock-timeout", "0"], idx, "locked")
    r = runner.invoke(app, add_args(idx))  # released: the next writer goes ahead
    assert r.exit_code == 0, r.output


def test_folder_without_index_is_left_untouched(tmp_path, idx):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    expect_refusal(add_args(idx)[:3] + [str(empty)] + add_args(idx)[4:], empty, "no deephash index")
    expect_refusal(["index", "remove", "--index", str(tmp_path / "absent"), "--ids", "1"], tmp_path, "absent")
    assert not (tmp_path / "absent").exists()


def test_remove_of_unknown_id_changes_nothing(idx):
    expect_refusal(["index", "remove", "--index", str(idx), "--ids", "1,999"], idx, "999")


def iah_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "iah"
    semantic = HammingIndex(BITS)
    semantic.add(rng.integers(0, 256, (6, 4), dtype=np.uint8), ids=np.arange(6))
    semantic.class_names = ["cat", "dog"]
    semantic.save(path)
    cat = CategoryIndex(BITS, ["cat", "dog"])
    cat.add(np.arange(6), rng.integers(0, 256, (6, 2, 4), dtype=np.uint8), np.eye(2, dtype=bool)[np.arange(6) % 2])
    cat.save(path / "category")
    return path


@pytest.mark.parametrize("key,value", [("categories", ["0"]), ("categories", [7]), ("class_names", "cat"),
                                       ("bits", "32"), ("threshold", "high"), ("format", "other/1")])
def test_edited_category_manifest_is_refused(tmp_path, key, value):
    path = iah_folder(tmp_path)
    mf = path / "category" / "category.json"
    m = json.loads(mf.read_text())
    m[key] = value
    mf.write_text(json.dumps(m))
    expect_refusal(["index", "info", "--index", str(path)], path, "category.json")
    expect_refusal(["index", "remove", "--index", str(path), "--ids", "1"], path, "category.json")


def test_manifest_names_are_checked_by_the_library_too(idx):
    set_field(idx, "files.codes.name", "../outside.npy")
    with pytest.raises(DeephashError, match="manifest.json is corrupt: files.codes.name"):
        HammingIndex.load(idx)
