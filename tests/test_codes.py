import json

import numpy as np
import pytest

from deephash import CodesFile, DeephashError, encode_outputs, hamming_distances, pack_bits, unpack_bits


def bit_by_bit_pack(bits01):
    """Straightforward reference: bit t of a code is bit (7 - t % 8) of byte t // 8."""
    n, b = bits01.shape
    out = np.zeros((n, (b + 7) // 8), dtype=np.uint8)
    for i in range(n):
        for t in range(b):
            if bits01[i, t]:
                out[i, t // 8] |= 1 << (7 - t % 8)
    return out


@pytest.mark.parametrize("bits", [8, 12, 16, 36, 48, 64, 128])
def test_packing_matches_bit_by_bit(bits):
    rng = np.random.default_rng(bits)
    b = rng.integers(0, 2, (17, bits))
    packed = pack_bits(b)
    assert packed.dtype == np.uint8 and packed.shape == (17, (bits + 7) // 8)
    np.testing.assert_array_equal(packed, bit_by_bit_pack(b))
    np.testing.assert_array_equal(unpack_bits(packed, bits), b)


def test_sign_convention_and_faiss_order():
    out = np.array([[0.5, -0.1, 0.0, -3, 1, 1, -1, -1, 2, -2, 2, -2, 2, -2, 2, -2]])
    codes = encode_outputs(out)
    assert codes.tolist() == [[0b10101100, 0b10101010]]


def test_hamming_matches_naive_and_padding_adds_nothing():
    rng = np.random.default_rng(0)
    for bits in (12, 64, 72):
        q, db = rng.integers(0, 2, (9, bits)), rng.integers(0, 2, (31, bits))
        naive = (q[:, None, :] != db[None, :, :]).sum(2)
        np.testing.assert_array_equal(hamming_distances(pack_bits(q), pack_bits(db), chunk=4), naive)


def test_hamming_width_mismatch_is_clear():
    with pytest.raises(DeephashError, match="widths differ"):
        hamming_distances(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_codes_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cf = CodesFile(pack_bits(rng.integers(0, 2, (5, 12))), 12, ids=[10, 11, 12, 13, 14],
                   paths=[f"img{i}.jpg" for i in range(5)], labels=np.eye(5, dtype=np.uint8),
                   class_names=list("abcde"), meta={"checkpoint": "x.ckpt"})
    path = cf.save(tmp_path / "codes.npz")
    back = CodesFile.load(path)
    np.testing.assert_array_equal(back.codes, cf.codes)
    np.testing.assert_array_equal(back.ids, cf.ids)
    assert back.bits == 12 and back.paths == cf.paths and back.class_names == list("abcde")
    np.testing.assert_array_equal(back.labels, cf.labels)
    assert back.meta == {"checkpoint": "x.ckpt"}


def test_codes_file_refuses_corrupt_and_truncated(tmp_path):
    cf = CodesFile(np.zeros((100, 8), np.uint8), 64)
    path = cf.save(tmp_path / "c.npz")
    data = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DeephashError, match="not a readable"):
        CodesFile.load(tmp_path / "t.npz")
    bad = bytearray(data)
    bad[len(bad) // 3] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(bad))
    with pytest.raises(DeephashError):
        CodesFile.load(tmp_path / "b.npz")
    with pytest.raises(DeephashError, match="not found"):
        CodesFile.load(tmp_path / "missing.npz")


def test_codes_file_validates_shapes():
    with pytest.raises(DeephashError, match="do not hold"):
        CodesFile(np.zeros((3, 2), np.uint8), 24)
    with pytest.raises(DeephashError, match="ids"):
        CodesFile(np.zeros((3, 2), np.uint8), 16, ids=[1, 2])


def test_codes_file_refuses_wrong_kinds_of_file(tmp_path):
    np.save(tmp_path / "raw.npy", np.zeros((3, 8), np.uint8))
    with pytest.raises(DeephashError, match="bare array"):
        CodesFile.load(tmp_path / "raw.npy")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DeephashError, match="not a readable deephash codes file"):
        CodesFile.load(tmp_path / "other.npz")


def test_padding_bits_must_be_zero():
    codes = pack_bits(np.ones((2, 12), np.uint8))
    CodesFile(codes, 12)
    codes[1, 1] |= 1
    with pytest.raises(DeephashError, match="4 padding bits zero"):
        CodesFile(codes, 12)


def iah_arrays(rng, n=6, n_cat=3, bits=12):
    """Arrays shaped like an IAH model's deephash.methods.Encoded."""
    return dict(semantic=pack_bits(rng.integers(0, 2, (n, bits))),
                category=pack_bits(rng.integers(0, 2, (n * n_cat, bits))).reshape(n, n_cat, -1),
                probs=rng.random((n, n_cat)).astype(np.float32),
                boxes=np.sort(rng.random((n, n_cat, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(n, n_cat, 4))


def test_category_codes_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    a = iah_arrays(rng)
    cf = CodesFile.from_iah(**a, bits=12, labels=(a["probs"] > 0.5).astype(np.uint8), class_names=list("abc"))
    assert cf.has_categories and cf.boxes.dtype == np.float32
    back = CodesFile.load(cf.save(tmp_path / "iah.npz"))
    np.testing.assert_array_equal(back.codes, a["semantic"])
    np.testing.assert_array_equal(back.category_codes, a["category"])
    np.testing.assert_array_equal(back.probs, a["probs"])
    np.testing.assert_array_equal(back.boxes, a["boxes"].astype(np.float32))
    assert back.has_categories and back.boxes.dtype == np.float32 and back.category_codes.dtype == np.uint8


def test_files_without_category_arrays_still_load(tmp_path):
    """A file as written before category arrays existed: only header, codes, ids (and labels)."""
    header = {"format": "deephash-codes/1", "bits": 8, "count": 2, "class_names": None, "meta": {}}
    np.savez(tmp_path / "old.npz", codes=np.array([[1], [2]], np.uint8), ids=np.arange(2),
             labels=np.eye(2, dtype=np.uint8), header=np.array(json.dumps(header)))
    cf = CodesFile.load(tmp_path / "old.npz")
    assert not cf.has_categories and cf.category_codes is None and cf.probs is None and cf.boxes is None
    assert cf.codes.tolist() == [[1], [2]]


@pytest.mark.parametrize("change, message", [
    (dict(category=np.zeros((6, 3, 1), np.uint8)), r"category_codes must have shape \(N, C, 2\)"),
    (dict(category=np.zeros((6, 3, 2), np.int64)), "category_codes must be packed uint8, got int64"),
    (dict(category=np.full((6, 3, 2), 0xFF, np.uint8)), "12-bit category_codes must have their 4 padding bits"),
    (dict(probs=np.zeros((6, 2), np.float32)), "probs has 2 categories but"),
    (dict(probs=np.full((6, 3), np.nan, np.float32)), "probs hold NaN"),
    (dict(probs=np.full((6, 3), 1.5, np.float32)), r"probs must lie in \[0, 1\]"),
    (dict(probs=np.ones((6, 3), np.int64)), "probs must be floating point"),
    (dict(boxes=np.zeros((6, 3, 5), np.float32)), r"boxes must have shape \(N, C, 4\) with N = 6"),
    (dict(boxes=np.zeros((5, 3, 4), np.float32)), "with N = 6 codes, got"),
    (dict(labels=np.ones((6, 4), np.uint8)), "labels have shape"),
    (dict(class_names=list("ab")), "2 class names for 3 categories"),
])
def test_category_arrays_are_validated(change, message):
    a = iah_arrays(np.random.default_rng(3))
    fields = {k: change.pop(k) for k in ("labels", "class_names") if k in change}
    with pytest.raises(DeephashError, match=message):
        CodesFile.from_iah(**(a | change), bits=12, **fields)


def test_invalid_category_arrays_in_a_file_name_the_file(tmp_path):
    a = iah_arrays(np.random.default_rng(4))
    path = CodesFile.from_iah(**a, bits=12).save(tmp_path / "iah.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["probs"][2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(DeephashError, match=r"nan\.npz: probs hold NaN"):
        CodesFile.load(tmp_path / "nan.npz")
