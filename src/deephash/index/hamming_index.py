"""HammingIndex: the public, FAISS-like face of the index engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import check_bits
from ..errors import DeephashError
from . import kernels
from .faiss_engine import FaissFlatEngine, FaissIVFEngine
from .flat import FlatEngine
from .mih import MAX_SUBSTRING_BITS, SMALL_N, MIHEngine
from .storage import MetadataStore, load_index, save_index
from .threads import default_threads

ENGINES = ("auto", "flat", "mih", "faiss-flat", "faiss-ivf")
MISSING = -1


class HammingIndex:
    """Exact search over packed binary codes (np.packbits order, ``bits/8`` bytes per code).

    ``search(q, k)`` returns the k nearest codes; among equal distances the code added
    earlier (smaller insertion position, which removals do not reorder) comes first, for
    every engine except ``faiss-flat``, which keeps FAISS's order within ties.
    ``range_search(q, r)`` returns every code with distance <= r: r is INCLUSIVE (FAISS's
    radius is exclusive). Engines: ``flat`` (exact scan, numba), ``mih`` (multi-index
    hashing, exact), ``faiss-flat``; ``auto`` uses MIH from 20,000 codes and falls back
    per query to the scan once MIH has verified about n/24 candidates, roughly a scan's
    cost (an explicit ``engine="mih"`` never falls back). ``faiss-ivf`` is the one
    APPROXIMATE engine (``ivf_nlist`` k-means lists, ``ivf_nprobe`` scanned per query):
    it can miss neighbours (and fill a row's tail with -1 when the probed lists hold fewer than k
    codes), never reports a wrong distance, keeps FAISS's choice among codes tied at the k-th
    distance, and is never chosen by ``auto``.
    """

    def __init__(self, bits: int, engine: str = "auto", mih_m: int | None = None, threads: int | None = None,
                 ivf_nlist: int | None = None, ivf_nprobe: int = 16):
        self.bits = check_bits(bits)
        self.nbytes = self.bits // 8
        self.W = -(-self.nbytes // 8)
        self.engine = _check_engine(engine)
        lo_m = -(-self.bits // MAX_SUBSTRING_BITS)
        if mih_m is not None and not (lo_m <= int(mih_m) <= self.bits):
            raise DeephashError(
                f"mih_m must be between {lo_m} and {self.bits} for {self.bits}-bit codes "
                f"(substrings of at most {MAX_SUBSTRING_BITS} bits), got {mih_m!r}"
            )
        self.mih_m = None if mih_m is None else int(mih_m)
        self.ivf_nlist = None if ivf_nlist is None else _positive_int("ivf_nlist", ivf_nlist)
        self.ivf_nprobe = _positive_int("ivf_nprobe", ivf_nprobe)
        self.threads = threads or default_threads()
        self.checkpoint: dict | str | None = None
        self.class_names: list[str] | None = None
        self.code_bits = self.bits  # learned length; shorter codes are zero-padded to ``bits``
        self._codes = np.empty((0, self.nbytes), np.uint8)
        self._ids = np.empty(0, np.int64)
        self._next_id = 0
        self._store = MetadataStore()
        self._manifest: dict | None = None  # as read by load(), for info()
        self._invalidate()

    # ---- contents -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def codes(self) -> np.ndarray:
        return self._codes

    def add(self, codes, ids=None, metadata=None) -> np.ndarray:
        """Append codes; returns their ids (consecutive new ids when none are given)."""
        codes = self._check_codes(codes, "codes")
        n = len(codes)
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = _as_ids(ids)
            if len(ids) != n:
                raise DeephashError(f"{len(ids)} ids for {n} codes")
            if len(ids) and ids.min() < 0:
                raise DeephashError("ids must be non-negative")
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                raise DeephashError(f"duplicate ids in the batch: {uniq[counts > 1][:5].tolist()}")
            clash = ids[np.isin(ids, self._ids)]
            if len(clash):
                raise DeephashError(f"ids already in the index: {clash[:5].tolist()}")
        if metadata is not None:
            metadata = list(metadata)
            if len(metadata) != n:
                raise DeephashError(f"{len(metadata)} metadata entries for {n} codes")
            if any(md is not None and not isinstance(md, dict) for md in metadata):
                raise DeephashError("metadata entries must be dicts or None")
            self._store.add(ids, metadata)
        self._codes = np.concatenate([self._codes, codes]) if len(self._codes) else codes.copy()
        self._ids = np.concatenate([self._ids, ids])
        if n:
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._invalidate()
        return ids

    def remove(self, ids) -> int:
        """Remove codes by id (all must exist); the others keep their relative order."""
        ids = np.unique(_as_ids(ids))
        pos = self._positions(ids)
        keep = np.ones(len(self._ids), bool)
        keep[pos] = False
        self._codes = self._codes[keep]
        self._ids = self._ids[keep]
        self._store.remove(ids)
        self._invalidate()
        return len(ids)

    def get_metadata(self, ids) -> list[dict | None]:
        """Metadata dict (path, labels, free-form fields) per id; None for unknown ids or none stored."""
        ids = _as_ids(ids)
        return self._store.get(ids.tolist())

    def get_codes(self, ids) -> np.ndarray:
        """Packed codes of the given ids (all must exist), in the order asked."""
        return self._codes[self._positions(_as_ids(ids))]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        if self._id_order is None:
            self._id_order = np.argsort(self._ids, kind="stable")
            self._sorted_ids = self._ids[self._id_order]
        if len(self._sorted_ids) == 0:
            found, at = np.zeros(len(ids), bool), np.zeros(len(ids), np.int64)
        else:
            at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
            found = self._sorted_ids[at] == ids
        if not found.all():
            raise DeephashError(f"ids not in the index: {ids[~found][:5].tolist()}")
        return self._id_order[at]

    def set_ivf_nprobe(self, nprobe: int) -> None:
        """Lists the faiss-ivf engine scans per query (recall vs speed), without rebuilding its k-means
        (which, like the MIH tables, is built on first use after load, add or remove, not stored)."""
        self.ivf_nprobe = _positive_int("ivf_nprobe", nprobe)
        if "faiss-ivf" in self._engines:
            self._engines["faiss-ivf"].set_nprobe(self.ivf_nprobe)

    # ---- search ---------------------------------------------------------------------

    def search(self, q, k: int, engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest codes per query: (distances int32, ids int64), both (nq, k).

        Rows are sorted by distance, ties by insertion position; when the index holds
        fewer than k codes the missing slots have id -1 and distance -1.
        """
        q = self._check_codes(q, "queries")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise DeephashError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if len(self) == 0 or len(q) == 0:
            return np.full((len(q), k), MISSING, np.int32), np.full((len(q), k), MISSING, np.int64)
        kk = min(k, len(self))
        eng = self._engine(engine)
        if eng.name.startswith("faiss"):
            keys = eng.knn_keys(q, kk)
        elif eng.name == "mih":
            keys = eng.knn_keys(q, self._qwords(q), kk, self.threads, fallback=self._auto(engine))
        else:
            keys = eng.knn_keys(self._qwords(q), kk, self.threads)
        D, I = self._decode(keys)
        if kk < k:
            pad = ((0, 0), (0, k - kk))
            D, I = np.pad(D, pad, constant_values=MISSING), np.pad(I, pad, constant_values=MISSING)
        return D, I

    def range_search(self, q, r: int, engine: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within distance r of each query, r INCLUSIVE (d <= r; FAISS uses d < r).

        Returns FAISS-style (lims int64 (nq+1,), distances int32, ids int64): the results of
        query i are [lims[i], lims[i+1]), sorted by distance then insertion position.
        """
        q = self._check_codes(q, "queries")
        if not isinstance(r, (int, np.integer)) or r < 0:
            raise DeephashError(f"radius must be a non-negative integer, got {r!r}")
        r = int(min(r, self.bits))
        if len(self) == 0 or len(q) == 0:
            return np.zeros(len(q) + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)
        eng = self._engine(engine)
        if eng.name.startswith("faiss"):
            lims, keys = eng.range_keys(q, r)
        elif eng.name == "mih":
            lims, keys = eng.range_keys(q, self._qwords(q), r, self.threads, fallback=self._auto(engine))
        else:
            lims, keys = eng.range_keys(self._qwords(q), r, self.threads)
        D, I = self._decode(keys)
        return lims, D, I

    def _decode(self, keys: np.ndarray):
        missing = keys == kernels.EMPTY_KEY
        pos = keys & kernels.POS_MASK
        pos[missing] = 0
        D = (keys >> kernels.POS_BITS).astype(np.int32)
        I = self._ids[pos] if len(self._ids) else pos
        D[missing], I[missing] = MISSING, MISSING
        return D, I

    def _auto(self, engine: str | None) -> bool:
        return (engine or self.engine) == "auto"

    def _engine(self, engine: str | None):
        name = _check_engine(engine or self.engine)
        if name == "auto":
            name = "flat" if len(self) < SMALL_N else "mih"
        if name not in self._engines:
            if name == "flat":
                self._engines[name] = FlatEngine(self._words())
            elif name == "mih":
                self._engines[name] = MIHEngine(self._codes, self._words(), self.mih_m)
            elif name == "faiss-ivf":
                self._engines[name] = FaissIVFEngine(self._codes, self.ivf_nlist, self.ivf_nprobe)
            else:
                self._engines[name] = FaissFlatEngine(self._codes)
        return self._engines[name]

    def _words(self) -> np.ndarray:
        """Codes as (n, W) uint64, a zero-copy view when the width is a multiple of 64 bits."""
        if self._words_cache is None:
            self._words_cache = _to_words(self._codes, self.W)
        return self._words_cache

    def _qwords(self, q: np.ndarray) -> np.ndarray:
        return _to_words(q, self.W)

    def _invalidate(self) -> None:
        self._engines: dict = {}
        self._words_cache = None
        self._id_order = None
        self._sorted_ids = None

    def _check_codes(self, codes, what: str) -> np.ndarray:
        a = np.asarray(codes)
        if a.ndim == 1 and what == "queries":
            a = a[None, :]
        if a.dtype != np.uint8:
            raise DeephashError(f"{what} must be packed uint8 codes (np.packbits order), got dtype {a.dtype}")
        if a.ndim != 2 or a.shape[1] != self.nbytes:
            raise DeephashError(
                f"{what} of shape {a.shape} do not match this {self.bits}-bit index: expected (n, {self.nbytes}) bytes"
            )
        return np.ascontiguousarray(a)

    # ---- persistence ----------------------------------------------------------------

    def save(self, path) -> Path:
        """Atomically write the index directory (see deephash.index.storage for the layout)."""
        header = {
            "bits": self.bits,
            "count": len(self),
            "next_id": self._next_id,
            "engine": {"default": self.engine, "mih_m": self.mih_m, "ivf_nlist": self.ivf_nlist,
                       "ivf_nprobe": self.ivf_nprobe},
            "checkpoint": self.checkpoint,
            "class_names": self.class_names,
            "code_bits": self.code_bits,
        }
        return save_index(path, codes=self._codes, ids=self._ids, store=self._store, header=header)

    @classmethod
    def load(cls, path, mmap: bool = True, verify: bool = True, threads: int | None = None) -> "HammingIndex":
        """Open a saved index; codes are memory-mapped unless mmap=False. Corruption raises DeephashError."""
        manifest, codes, ids, meta_path = load_index(path, mmap=mmap, verify=verify)
        eng = manifest.get("engine") or {}
        index = cls(int(manifest["bits"]), engine=eng.get("default", "auto"), mih_m=eng.get("mih_m"), threads=threads,
                    ivf_nlist=eng.get("ivf_nlist"), ivf_nprobe=eng.get("ivf_nprobe", 16))
        index._codes, index._ids = codes, ids
        index._next_id = int(manifest.get("next_id", int(ids.max()) + 1 if len(ids) else 0))
        index.checkpoint = manifest.get("checkpoint")
        index.class_names = manifest.get("class_names")
        index.code_bits = int(manifest.get("code_bits", index.bits))
        index._store = MetadataStore(Path(meta_path))
        index._manifest = manifest
        index._invalidate()
        return index

    def info(self) -> dict:
        out = {
            "bits": self.bits,
            "code_bits": self.code_bits,
            "count": len(self),
            "engine": self.engine,
            "mih_m": self.mih_m,
            "ivf_nlist": self.ivf_nlist,
            "ivf_nprobe": self.ivf_nprobe,
            "next_id": self._next_id,
            "checkpoint": self.checkpoint,
            "class_names": self.class_names,
        }
        if self._manifest is not None:
            out["format"] = self._manifest.get("format")
            out["version"] = self._manifest.get("version")
            out["files"] = self._manifest.get("files")
        return out


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise DeephashError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return engine


def _positive_int(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise DeephashError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_ids(ids) -> np.ndarray:
    a = np.atleast_1d(np.asarray(ids))
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise DeephashError(f"ids must be a 1-D sequence of integers, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _to_words(codes: np.ndarray, W: int) -> np.ndarray:
    n, nbytes = codes.shape
    if nbytes == W * 8 and codes.flags.c_contiguous:
        return codes.view(np.uint64)
    out = np.zeros((n, W * 8), np.uint8)
    out[:, :nbytes] = codes
    return out.view(np.uint64)


__all__ = ["HammingIndex", "ENGINES"]


def index_from_codes(cf, **kwargs) -> HammingIndex:
    """An index holding a codes file's codes with its ids, paths, label names and provenance."""
    index = HammingIndex(cf.index_bits, **kwargs)
    index.add(cf.codes, ids=cf.ids, metadata=cf.metadata_rows())
    index.code_bits = cf.bits
    index.class_names = cf.class_names
    index.checkpoint = cf.meta.get("checkpoint") if isinstance(cf.meta, dict) else None
    return index
