"""Byte-flip fuzzing of the codes-file loader: every seeded corruption is either refused with a DeephashError
or loads to exactly the contents that were written (a flip in a byte no reader uses, such as a zip timestamp or
the copy of a CRC in a local header); never another exception, never different codes, ids, paths or labels."""

import json
import zipfile

import numpy as np
import pytest

from deephash.codes import CodesFile, pack_bits
from deephash.errors import DeephashError

N_CORRUPTIONS = 1000


def small_codes_file(path, checksum: bool = True):
    rng = np.random.default_rng(0)
    cf = CodesFile(pack_bits(rng.integers(0, 2, (6, 20))), 20, ids=np.arange(10, 16),
                   paths=[f"im{i}.png" for i in range(6)], labels=np.eye(6, 3, dtype=np.uint8),
                   class_names=["a", "b", "c"], meta={"protocol": "x"})
    cf.save(path)
    if not checksum:  # as written before the header carried a checksum
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(str(arrays["header"]))
        del header["sha256"]
        arrays["header"] = np.array(json.dumps(header))
        np.savez(path, **arrays)
    return cf


def same(a: CodesFile, b: CodesFile) -> bool:
    return (a.bits == b.bits and np.array_equal(a.codes, b.codes) and np.array_equal(a.ids, b.ids)
            and a.paths == b.paths and np.array_equal(a.labels, b.labels) and a.class_names == b.class_names
            and a.meta == b.meta)


def corrupt(data: bytes, rng) -> bytes:
    """One of: flip 1-4 random bits, overwrite a random byte, truncate, or overwrite a run of bytes."""
    b = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        i = rng.integers(len(b))
        b[i] = (b[i] + int(rng.integers(1, 256))) % 256
    elif kind == 2:
        del b[rng.integers(1, len(b)):]
    else:
        i = int(rng.integers(len(b)))
        b[i:i + 16] = rng.integers(0, 256, min(16, len(b) - i), dtype=np.uint8).tobytes()
    return bytes(b)


def fuzz(tmp_path, checksum: bool) -> dict:
    original = small_codes_file(tmp_path / "c.npz", checksum)
    data = (tmp_path / "c.npz").read_bytes()
    rng = np.random.default_rng(16)
    counts = {"refused": 0, "same": 0, "different": 0}
    for n in range(N_CORRUPTIONS):
        bad = corrupt(data, rng)
        if bad == data:
            counts["same"] += 1
            continue
        p = tmp_path / f"f{n % 4}.npz"
        p.write_bytes(bad)
        try:
            back = CodesFile.load(p)
        except DeephashError as e:
            assert str(p) in str(e)
            counts["refused"] += 1
            continue
        counts["same" if same(back, original) else "different"] += 1
    return counts


def test_fuzzed_codes_files_are_refused_or_unchanged(tmp_path):
    counts = fuzz(tmp_path, checksum=True)
    assert counts["different"] == 0, counts
    assert counts["refused"] > 0.9 * N_CORRUPTIONS, counts


def test_old_codes_files_without_checksum_never_crash_the_loader(tmp_path):
    """Files written before the checksum still load; corruptions of them are refused or harmless too (the zip
    CRC-32 catches flipped array bytes), but an array edited and re-zipped would only be seen by the checksum."""
    counts = fuzz(tmp_path, checksum=False)
    assert counts["different"] == 0, counts
    assert CodesFile.load(tmp_path / "c.npz").paths[0] == "im0.png"


def test_checksum_sees_an_edit_that_the_zip_crc_cannot(tmp_path):
    """A valid code changed inside the array and the file re-zipped (new CRCs): only the header's sha256 sees it."""
    small_codes_file(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["codes"][2, 0] ^= 0x10
    np.savez(tmp_path / "c.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert zf.testzip() is None  # the zip itself is sound
    with pytest.raises(DeephashError, match="checksum mismatch"):
        CodesFile.load(tmp_path / "c.npz")
