"""Byte-level fuzzing of the checkpoint loader: every corruption of a real checkpoint is refused with a
DeephashError (the sha256 covers the body, the magic and the digest line are checked exactly), never a
traceback and never a payload that loads."""

import random

import numpy as np
import pytest

from deephash.data import load_source
from deephash.errors import CorruptFileError
from deephash.runs import TrainConfig
from deephash.runs.checkpoint import HEADER, MAGIC, load_checkpoint
from deephash.train.trainer import train

N = 1000


def corrupt(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded corruption: a bit flip or a changed byte anywhere, a changed byte in the header (magic,
    digest, separator), a truncation, inserted or deleted bytes (each kind about a sixth)."""
    kind = rng.choice(["bit", "byte", "header", "truncate", "insert", "delete"])
    b = bytearray(data)
    if kind in ("bit", "byte", "header"):
        i = rng.randrange(HEADER) if kind == "header" else rng.randrange(len(b))
        if kind == "bit":
            b[i] ^= 1 << rng.randrange(8)
        else:
            b[i] = rng.choice([v for v in range(256) if v != b[i]])
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 16)]
    assert bytes(b) != data
    return kind, bytes(b)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    digits = load_source("digits")["all"].subset(np.arange(40))
    cfg = TrainConfig(bits=8, image_size=8, epochs=1, batch_size=20, threads=1, out=str(root / "run"))
    return train(cfg, digits, progress=False).checkpoint  # about 1 MB (an 8 px model)


def test_a_thousand_corruptions_are_all_refused(tmp_path, small_checkpoint):
    data = small_checkpoint.read_bytes()
    assert data.startswith(MAGIC)
    load_checkpoint(small_checkpoint)  # the original loads
    rng = random.Random(16)
    path = tmp_path / "fuzzed.ckpt"
    refused: dict[str, int] = {}
    for _ in range(N):
        kind, bad = corrupt(data, rng)
        path.write_bytes(bad)
        with pytest.raises(CorruptFileError) as e:  # anything else (or loading) fails the test
            load_checkpoint(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        refused[kind] = refused.get(kind, 0) + 1
    assert sum(refused.values()) == N and len(refused) == 6, refused
