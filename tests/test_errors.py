"""Errors by kind: each is a DeephashError, the matching built-in, and carries an HTTP status."""

import numpy as np
import pytest
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.errors import (
    CorruptFileError,
    DeephashError,
    IncompatibleError,
    InvalidInputError,
    MissingFileError,
    NotFoundError,
)
from deephash.index import HammingIndex
from deephash.retrieval import ImageIndex
from deephash.runs.checkpoint import load_checkpoint, save_checkpoint


def _codes(n=4, bits=16):
    return CodesFile(np.arange(n * bits // 8, dtype=np.uint8).reshape(n, bits // 8), bits)


def test_each_kind_is_raised_where_its_problem_is(tmp_path):
    cases = []
    with pytest.raises(MissingFileError) as e:
        CodesFile.load(tmp_path / "nowhere.npz")
    cases.append((e.value, FileNotFoundError, 404))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError) as e:
        CodesFile.load(tmp_path / "junk.npz")
    cases.append((e.value, ValueError, 422))
    save_checkpoint(tmp_path / "c.ckpt", {"config": {}})
    data = bytearray((tmp_path / "c.ckpt").read_bytes())
    data[-1] ^= 1
    (tmp_path / "c.ckpt").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="checksum"):
        load_checkpoint(tmp_path / "c.ckpt")
    index = HammingIndex(16)
    index.add(_codes().codes)
    with pytest.raises(InvalidInputError) as e:
        index.search(_codes().codes, k=0)
    cases.append((e.value, ValueError, 422))
    with pytest.raises(NotFoundError) as e:
        index.remove([99])
    cases.append((e.value, LookupError, 404))
    with pytest.raises(IncompatibleError) as e:
        ImageIndex.from_codes(_codes()).add_codes(_codes(bits=24))
    cases.append((e.value, ValueError, 409))
    for err, builtin, status in cases:
        assert isinstance(err, DeephashError) and isinstance(err, builtin) and err.status == status
        assert str(err)  # a message naming the problem


def test_cli_still_prints_one_error_line(tmp_path):
    r = CliRunner().invoke(app, ["index", "build", "--codes", str(tmp_path / "nowhere.npz"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and r.output == f"error: codes file not found: {tmp_path / 'nowhere.npz'}\n"
