"""Binary codes: sign → bits → packed bytes, Hamming distance, and the codes file.

Packing follows ``np.packbits`` (big-endian within each byte: bit 0 of the code is
the most significant bit of byte 0), which is the byte layout FAISS binary indexes
expect, so packed codes can be handed to ``faiss.IndexBinaryFlat`` unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, DeephashError, IncompatibleError, InvalidInputError, MissingFileError
from .utils.io import atomic_write

CODES_FORMAT = "deephash-codes/1"


def check_bits(bits: int) -> int:
    """Index widths are whole bytes (a multiple of 8 from 8 to 1024)."""
    if not isinstance(bits, (int, np.integer)) or bits < 8 or bits > 1024 or bits % 8:
        raise InvalidInputError(f"bits must be a multiple of 8 between 8 and 1024, got {bits!r}")
    return int(bits)


def check_code_length(bits: int) -> int:
    """Learned code lengths can be any size 1..1024 (the DSH paper uses 12 and 36); they are
    packed into ceil(bits/8) bytes with zero padding, which leaves Hamming distances unchanged."""
    if not isinstance(bits, (int, np.integer)) or bits < 1 or bits > 1024:
        raise InvalidInputError(f"code length must be between 1 and 1024 bits, got {bits!r}")
    return int(bits)


def packed_width(bits: int) -> int:
    return (check_code_length(bits) + 7) // 8


def binarize(outputs) -> np.ndarray:
    """Real-valued network outputs (N, bits) → {0,1} uint8; output ≥ 0 ↦ 1 (sign with sign(0)=+1)."""
    if hasattr(outputs, "detach"):
        outputs = outputs.detach().cpu().numpy()
    return (np.asarray(outputs) >= 0).astype(np.uint8)


def pack_bits(bits01: np.ndarray) -> np.ndarray:
    """(N, bits) of {0,1} → (N, ceil(bits/8)) uint8 in np.packbits order, zero-padded."""
    bits01 = np.asarray(bits01)
    if bits01.ndim != 2:
        raise InvalidInputError(f"expected a 2-D (n, bits) array of 0/1, got shape {bits01.shape}")
    check_code_length(bits01.shape[1])
    return np.packbits(bits01.astype(bool), axis=1)


def unpack_bits(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """(N, nbytes) uint8 → (N, bits) uint8 of {0,1}."""
    out = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1)
    return out if bits is None else out[:, :bits]


def encode_outputs(outputs) -> np.ndarray:
    """Network outputs → packed codes, the form every index and file uses."""
    return pack_bits(binarize(outputs))


def hamming_distances(q: np.ndarray, db: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Exact (nq, ndb) Hamming distances between packed codes, by XOR + popcount.

    Rows are viewed as 64-bit words when the width allows, so popcount runs on
    whole words; queries are processed in chunks to bound memory.
    """
    q = np.ascontiguousarray(q, dtype=np.uint8)
    db = np.ascontiguousarray(db, dtype=np.uint8)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise IncompatibleError(f"code widths differ: queries {q.shape}, database {db.shape}")
    nbytes = q.shape[1]
    word = np.uint64 if nbytes % 8 == 0 else np.uint8
    qv, dv = q.view(word), db.view(word)
    out = np.empty((q.shape[0], db.shape[0]), dtype=np.int32)
    for s in range(0, q.shape[0], chunk):
        x = np.bitwise_xor(qv[s : s + chunk, None, :], dv[None, :, :])
        out[s : s + chunk] = np.bitwise_count(x).sum(axis=2, dtype=np.int32)
    return out


def _check_padding(codes: np.ndarray, bits: int, what: str) -> None:
    pad = codes.shape[-1] * 8 - bits
    if pad and codes.size and (codes[..., -1] & ((1 << pad) - 1)).any():
        raise InvalidInputError(f"{bits}-bit {what} must have their {pad} padding bits zero "
                            "(pack them with deephash.codes.pack_bits)")


CATEGORY_ARRAYS = ("category_codes", "probs", "boxes")

# what a damaged .npz raises from zipfile, zlib and numpy's header parser (UnicodeDecodeError, JSONDecodeError
# and zlib.error's siblings are ValueErrors or OSErrors; NotImplementedError: an unknown zip version or method)
_READ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error,
                struct.error, MemoryError, OverflowError)


def _exact_array(a, dtype, what: str, lo: int, hi: int) -> np.ndarray:
    """``a`` as ``dtype`` when every value fits unchanged: integers (or bools) in [lo, hi]; floats, strings and
    out-of-range values are refused instead of being truncated (300 would silently become 44 in uint8)."""
    a = np.asarray(a)
    if a.dtype == dtype and lo <= np.iinfo(dtype).min and hi >= np.iinfo(dtype).max:
        return a
    if a.dtype != bool and not np.issubdtype(a.dtype, np.integer):
        raise InvalidInputError(f"{what} must be integers, got {a.dtype} values")
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise InvalidInputError(f"{what} must lie in [{lo}, {hi}], got {bad}")
    return a.astype(dtype)


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays`` (what a codes file's header records)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class CodesFile:
    """Packed codes with what is needed to use them later: ids, paths, labels, provenance.

    Category-aware (IAH) files also hold, per image and category, ``category_codes`` (N, C, nbytes)
    packed like ``codes``, the image-level class ``probs`` (N, C) and the ``boxes`` (N, C, 4) of the
    proposals that produced the codes (normalised x1, y1, x2, y2), so ``deephash evaluate`` can score
    them on the per-(query, category) protocol.
    """

    codes: np.ndarray
    bits: int
    ids: np.ndarray | None = None
    paths: list[str] | None = None
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    meta: dict = field(default_factory=dict)
    category_codes: np.ndarray | None = None
    probs: np.ndarray | None = None
    boxes: np.ndarray | None = None

    def __post_init__(self):
        """Every value is checked, never cast: packed codes are bytes 0..255, ids non-negative integers, labels
        0/1 (a float or out-of-range value would otherwise be truncated into a different, valid-looking one)."""
        self.codes = np.ascontiguousarray(_exact_array(self.codes, np.uint8, "packed codes", 0, 255))
        if self.codes.ndim != 2 or self.codes.shape[1] != packed_width(self.bits):
            raise InvalidInputError(f"codes of shape {self.codes.shape} do not hold {self.bits}-bit codes")
        _check_padding(self.codes, self.bits, "codes")
        n = len(self.codes)
        if self.ids is None:
            self.ids = np.arange(n, dtype=np.int64)
        else:
            self.ids = _exact_array(self.ids, np.int64, "ids", 0, np.iinfo(np.int64).max)
            if self.ids.ndim != 1:
                raise InvalidInputError(f"ids must be a 1-D array, got shape {self.ids.shape}")
        if len(self.ids) != n:
            raise InvalidInputError(f"{len(self.ids)} ids for {n} codes")
        if self.paths is not None:
            self.paths = [str(p) for p in self.paths]
            if len(self.paths) != n:
                raise InvalidInputError(f"{len(self.paths)} paths for {n} codes")
        if self.labels is not None:
            self.labels = _exact_array(self.labels, np.uint8, "labels", 0, 1)
            if self.labels.ndim != 2 or len(self.labels) != n:
                raise InvalidInputError(f"labels must be (N, classes) rows of 0/1 for N = {n} codes, got shape "
                                        f"{self.labels.shape}")
        if self.class_names is not None and (not isinstance(self.class_names, list)
                                             or not all(isinstance(c, str) for c in self.class_names)):
            raise InvalidInputError("class_names must be a list of strings")
        if not isinstance(self.meta, dict):
            raise InvalidInputError(f"meta must be a dict, got {type(self.meta).__name__}")
        self._check_category_arrays()

    def _check_category_arrays(self) -> None:
        """Shapes (N, C, ...) with one C for all of them (and for labels / class names), dtypes, padding bits,
        finite probabilities in [0, 1] and finite boxes."""
        n, nbytes = self.codes.shape
        n_cat = None
        for name, tail in (("category_codes", (nbytes,)), ("probs", ()), ("boxes", (4,))):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a)
            if a.ndim != 2 + len(tail) or len(a) != n or a.shape[2:] != tail:
                want = ", ".join(["N", "C", *map(str, tail)])
                raise InvalidInputError(f"{name} must have shape ({want}) with N = {n} codes, got {a.shape}")
            if n_cat is not None and a.shape[1] != n_cat:
                raise InvalidInputError(f"{name} has {a.shape[1]} categories but the other category arrays have "
                                    f"{n_cat}")
            n_cat = a.shape[1]
            if name == "category_codes":
                if a.dtype != np.uint8:
                    raise InvalidInputError(f"category_codes must be packed uint8, got {a.dtype}")
                _check_padding(a, self.bits, "category_codes")
            else:
                if not np.issubdtype(a.dtype, np.floating):
                    raise InvalidInputError(f"{name} must be floating point, got {a.dtype}")
                a = a.astype(np.float32)
                if not np.isfinite(a).all():
                    raise InvalidInputError(f"{name} hold NaN or infinite values")
                if name == "probs" and ((a < 0) | (a > 1)).any():
                    raise InvalidInputError("probs must lie in [0, 1]")
            setattr(self, name, np.ascontiguousarray(a))
        if n_cat is not None and self.labels is not None and np.shape(self.labels)[1:] != (n_cat,):
            raise InvalidInputError(f"labels have shape {np.shape(self.labels)} but the category arrays have {n_cat} "
                                "categories")
        if n_cat is not None and self.class_names is not None and len(self.class_names) != n_cat:
            raise InvalidInputError(f"{len(self.class_names)} class names for {n_cat} categories")

    @classmethod
    def from_iah(cls, semantic, category, probs, boxes, bits: int, **fields) -> "CodesFile":
        """A codes file for an IAH encoding (``deephash.methods.Encoded`` of an IAH model): the semantic codes as
        ``codes`` plus the category codes, probabilities and boxes; ``fields`` are the other CodesFile fields
        (ids, paths, labels, class_names, meta)."""
        return cls(codes=semantic, bits=bits, category_codes=category, probs=probs, boxes=boxes, **fields)

    @property
    def has_categories(self) -> bool:
        """True when the file holds category-aware codes."""
        return self.category_codes is not None

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def index_bits(self) -> int:
        """Width of the packed rows in bits: what an index over these codes holds (≥ ``bits``)."""
        return self.codes.shape[1] * 8

    def metadata_rows(self) -> list[dict] | None:
        """Per-code metadata for an index: the image path and the names of its labels."""
        if self.paths is None and self.labels is None:
            return None
        names = []
        if self.labels is not None:
            names = self.class_names or [str(c) for c in range(self.labels.shape[1])]
        rows = []
        for i in range(len(self)):
            md = {}
            if self.paths is not None:
                md["path"] = self.paths[i]
            if self.labels is not None:
                md["labels"] = [n for n, v in zip(names, self.labels[i]) if v]
            rows.append(md)
        return rows

    @staticmethod
    def check_destination(path: str | os.PathLike) -> Path:
        """Refuse a destination that cannot become a codes file (a folder, or under a file), before any work."""
        path = Path(path)
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder; give the codes file to write (e.g. {path / 'codes.npz'})")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise InvalidInputError(f"cannot write codes file {path}: {parent} is a file, not a folder")
        return path

    def save(self, path: str | os.PathLike) -> Path:
        """Write the codes file atomically; its header records the sha256 of the arrays (``load`` checks it)."""
        path = self.check_destination(path)
        arrays = {"codes": self.codes, "ids": self.ids}
        if self.paths is not None:
            arrays["paths"] = np.array(self.paths, dtype=str)
        if self.labels is not None:
            arrays["labels"] = np.asarray(self.labels, dtype=np.uint8)
        arrays |= {name: getattr(self, name) for name in CATEGORY_ARRAYS if getattr(self, name) is not None}
        header = {
            "format": CODES_FORMAT,
            "bits": self.bits,
            "count": len(self),
            "class_names": self.class_names,
            "meta": self.meta,
            "sha256": arrays_digest(arrays),
        }
        arrays = {"header": np.array(json.dumps(header)), **arrays}
        try:
            atomic_write(path, lambda fh: np.savez(fh, **arrays))
        except OSError as e:
            raise InvalidInputError(f"cannot write codes file {path}: {e.strerror or e}") from None
        return path

    @property
    def shard(self) -> dict | None:
        """``{"index", "count", "rows", "total"}`` when this file is one shard of a sharded encode, else None."""
        info = self.meta.get("shard")
        return info if isinstance(info, dict) else None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CodesFile":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"codes file not found: {path}")
        try:
            z = np.load(path, allow_pickle=False)
        except _READ_ERRORS as e:
            raise CorruptFileError(f"{path} is not a readable deephash codes file ({type(e).__name__}: {e})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CorruptFileError(f"{path} is a bare array, not a deephash codes file (write one with CodesFile.save "
                                "or `deephash encode`)")
        try:
            with z:
                if "header" not in z.files:
                    raise CorruptFileError(f"{path} is an .npz without a deephash header, not a codes file (write one "
                                           "with CodesFile.save or `deephash encode`)")
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in z.files if k != "header"}
            if not isinstance(header, dict):
                raise TypeError(f"the header is a {type(header).__name__}, not an object")
            bits, count = header["bits"], header["count"]
            codes, ids = arrays["codes"], arrays["ids"]
        except (*_READ_ERRORS, KeyError, TypeError) as e:
            raise CorruptFileError(f"{path} is not a readable deephash codes file ({type(e).__name__}: {e})") from None
        if header.get("format") != CODES_FORMAT:
            raise CorruptFileError(f"{path}: unknown codes format {header.get('format')!r}")
        if type(bits) is not int or type(count) is not int:
            raise CorruptFileError(f"{path}: the header's bits and count must be integers, got {bits!r}, {count!r}")
        if "paths" in arrays and arrays["paths"].dtype.kind != "U":
            raise CorruptFileError(f"{path}: paths must be text, got {arrays['paths'].dtype}")
        try:
            out = cls(
                codes=codes,
                bits=bits,
                ids=ids,
                paths=[str(p) for p in arrays["paths"]] if "paths" in arrays else None,
                labels=arrays.get("labels"),
                class_names=header.get("class_names"),
                meta=header.get("meta") or {},
                **{name: arrays[name] for name in CATEGORY_ARRAYS if name in arrays},
            )
        except DeephashError as e:
            raise InvalidInputError(f"{path}: {e}") from None
        if len(out) != count:
            raise CorruptFileError(f"{path}: header says {count} codes, file holds {len(out)}")
        digest = header.get("sha256")  # files written before the checksum have none
        if digest is not None and digest != arrays_digest(arrays):
            raise CorruptFileError(f"{path}: checksum mismatch: the arrays differ from what was written (the file was "
                                   "altered or damaged)")
        return out


def merge_shards(shards: list[CodesFile], names: list[str] | None = None) -> CodesFile:
    """The codes file of a sharded encode (``deephash encode --shard i/n``, or torchrun) from all its shards, in
    any order: rows in dataset order, the shard record dropped, so it equals a single-process encode byte for byte
    once saved. Shards of different encodes, a missing or repeated shard, or a plain codes file are refused,
    naming the file (``names``, else the shard's position)."""
    if not shards:
        raise InvalidInputError("no shards to merge")
    names = names or [f"shard file {i + 1}" for i in range(len(shards))]
    for cf, name in zip(shards, names):
        if cf.shard is None:
            raise InvalidInputError(f"{name} is not a shard of a sharded encode (it has no shard record)")
    order = sorted(range(len(shards)), key=lambda k: shards[k].shard["index"])
    shards, names = [shards[k] for k in order], [names[k] for k in order]
    first, count = shards[0], shards[0].shard["count"]
    base = {k: v for k, v in first.meta.items() if k != "shard"}
    indices = [cf.shard["index"] for cf in shards]
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise InvalidInputError(f"the shards do not make up one encode of {count} shards: "
                                + "; ".join(filter(None, [missing and f"missing {missing}",
                                                          repeated and f"repeated {repeated}"])))
    end = 0
    for cf, name in zip(shards, names):
        info = cf.shard
        same = ({k: v for k, v in cf.meta.items() if k != "shard"} == base and cf.bits == first.bits
                and cf.class_names == first.class_names and info["count"] == count
                and info["total"] == first.shard["total"] and (cf.paths is None) == (first.paths is None)
                and (cf.labels is None) == (first.labels is None))
        if not same:
            raise InvalidInputError(f"{name} is a shard of another encode than {names[0]} (model, data or split "
                                    "differ)")
        if info["rows"][0] != end:
            raise InvalidInputError(f"{name} covers rows {info['rows']} but the shards before it end at row {end}")
        end = info["rows"][1]
    if end != first.shard["total"]:
        raise InvalidInputError(f"the shards cover {end} of {first.shard['total']} rows")
    full = [cf for cf in shards if len(cf)] or shards[:1]

    def cat(name):
        parts = [getattr(cf, name) for cf in full]
        return None if parts[0] is None else np.concatenate(parts)

    return CodesFile(cat("codes"), first.bits, ids=cat("ids"),
                     paths=None if first.paths is None else [p for cf in full for p in cf.paths],
                     labels=cat("labels"), class_names=first.class_names, meta=base,
                     **{name: cat(name) for name in CATEGORY_ARRAYS})
