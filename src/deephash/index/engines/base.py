"""The engine interface every search structure implements, and the registry that names them.

An engine answers k-NN and radius queries over (code, id) pairs, at the id level, so ``HammingIndex``
treats all of them alike. Two kinds fit the same interface:

- in-memory engines (``mutable = False``) index ONE snapshot given to ``build`` and are never changed
  afterwards: read-only structures that many threads search without locks. Their owner builds a new
  engine after an add or remove.
- engines that store ids and codes themselves (``mutable = True``, e.g. a remote collection) also take
  ``add``/``remove``, which the owner forwards instead of rebuilding. They change in place, so a search
  still reading the owner's previous snapshot already sees the new content: such an engine gives readers
  the old or the new state per call, not one snapshot across the owner's other data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ...codes import check_bits
from ...errors import InvalidInputError
from ..kernels import flat as kernels

MISSING = -1  # id and distance of an empty result slot (k larger than the engine's content)


class IndexEngine(ABC):
    """Exact or approximate Hamming search over packed codes (np.packbits order, ``bits/8`` bytes each).

    Settings (``defaults`` lists them) are validated in the constructor, unknown keys refused, so an
    engine can be configured from a manifest. Searches take packed queries (nq, bits/8) and return
    FAISS-shaped results; radii are INCLUSIVE (d <= r), unlike FAISS. A search must not write state
    shared with other searches: one engine is searched by many threads at once.
    """

    name: ClassVar[str]
    exact: ClassVar[bool]
    mutable: ClassVar[bool] = False
    stores_metadata: ClassVar[bool] = False  # mutable engines that also keep each code's metadata dict
    persistent: ClassVar[bool] = False  # built structures a saved index stores (``tables``/``restore``)
    defaults: ClassVar[dict[str, Any]] = {}
    # How results order codes at equal distance (tests/test_conformance.py checks each engine's claim):
    # "position": by insertion position, also choosing which codes tied at the k-th distance come back, so an
    # exact engine's rows equal a brute force's; "found-position" / "found-id": the codes returned are ordered
    # by insertion position / by id, but the engine picks which of those tied at the k-th distance come back;
    # "engine": the engine's own order. Distances are exact whatever the rule.
    ties: ClassVar[str] = "position"
    # Where list_engines() (and so the CLI's help and errors) names the engine: lower first, ties by registration.
    rank: ClassVar[int] = 100

    def __init__(self, bits: int, **settings):
        self.bits = check_bits(bits)
        self.nbytes = self.bits // 8
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise InvalidInputError(f"unknown setting(s) {', '.join(unknown)} for engine {self.name!r}; it takes "
                                f"{', '.join(sorted(self.defaults)) or 'none'}")
        self._settings = self._validate({**self.defaults, **settings})

    def _validate(self, settings: dict) -> dict:
        """Check and normalise the settings (subclasses override); raise InvalidInputError naming the culprit."""
        return settings

    def settings(self) -> dict:
        """The settings as a manifest persists them (JSON-friendly)."""
        return dict(self._settings)

    @classmethod
    def part_settings(cls, settings: dict, part: str) -> dict:
        """Settings for one part of an index made of several (CategoryIndex: one per category). Engines that
        name external storage (a collection) give each part its own."""
        return dict(settings)

    @abstractmethod
    def build(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Index exactly these codes with these ids (int64, unique); ties later break by this order."""

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Mutable engines: store these codes. Those with ``stores_metadata`` take ``metadata=`` (a list of
        dicts) here, and in ``build`` a function ids -> metadata list, for codes they must re-insert."""
        raise InvalidInputError(f"engine {self.name!r} indexes one snapshot: build a new one to add codes")

    def remove(self, ids: np.ndarray) -> None:
        raise InvalidInputError(f"engine {self.name!r} indexes one snapshot: build a new one to remove codes")

    @abstractmethod
    def search(self, q: np.ndarray, k: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest per query: (distances int32 (nq, k), ids int64 (nq, k)), sorted by distance; slots
        beyond the engine's content hold -1 in both."""

    @abstractmethod
    def range_search(self, q: np.ndarray, r: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code with distance <= r: (lims int64 (nq+1,), distances int32, ids int64); query i's
        results are [lims[i], lims[i+1]), sorted by distance."""

    @abstractmethod
    def __len__(self) -> int: ...

    def tables(self) -> tuple[dict, dict[str, np.ndarray]]:
        """A persistent engine's built structure: (JSON-friendly parameters, named arrays), which
        ``restore`` takes back with the same codes and ids instead of building."""
        raise InvalidInputError(f"engine {self.name!r} has no tables to store")

    def restore(self, codes: np.ndarray, ids: np.ndarray, params: dict, arrays: dict[str, np.ndarray]) -> None:
        """Take back what ``tables`` gave for exactly these codes and ids; InvalidInputError naming what does not
        fit (the caller then builds instead)."""
        raise InvalidInputError(f"engine {self.name!r} has no tables to restore")


_REGISTRY: dict[str, type[IndexEngine]] = {}
RESERVED = ("auto",)  # a HammingIndex policy, not an engine


def register_engine(name: str):
    """Class decorator: make an engine available to ``create_engine`` (and HammingIndex) under ``name``."""
    def deco(cls: type[IndexEngine]) -> type[IndexEngine]:
        if not (isinstance(cls, type) and issubclass(cls, IndexEngine)):
            raise InvalidInputError(f"engine {name!r} must subclass IndexEngine, got {cls!r}")
        if name in _REGISTRY or name in RESERVED:
            raise InvalidInputError(f"an engine named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def list_engines() -> tuple[str, ...]:
    """Registered engine names by rank, then registration order (module discovery order is the file system's)."""
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].rank))


def engine_class(name: str) -> type[IndexEngine]:
    if name not in _REGISTRY:
        raise InvalidInputError(f"unknown engine {name!r}; choose one of {', '.join(list_engines())}")
    return _REGISTRY[name]


def create_engine(name: str, bits: int, **settings) -> IndexEngine:
    """A new, empty engine; in-memory engines then need ``build(codes, ids)``."""
    return engine_class(name)(bits, **settings)


# ---- shared by the in-memory engines ---------------------------------------------------------


def check_codes(codes, nbytes: int, what: str) -> np.ndarray:
    """Packed uint8 codes of the right width, C-contiguous (no copy when they already are)."""
    a = np.asarray(codes)
    if a.dtype != np.uint8:
        raise InvalidInputError(f"{what} must be packed uint8 codes (np.packbits order), got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != nbytes:
        raise InvalidInputError(
            f"{what} of shape {a.shape} do not match this {nbytes * 8}-bit index: expected (n, {nbytes}) bytes")
    return np.ascontiguousarray(a)


def check_k(k) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_radius(r) -> int:
    if not isinstance(r, (int, np.integer)) or r < 0:
        raise InvalidInputError(f"radius must be a non-negative integer, got {r!r}")
    return int(r)


def positive_int(what: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def to_words(codes: np.ndarray, W: int) -> np.ndarray:
    """Codes as (n, W) uint64 for the kernels, a zero-copy view when the width is a multiple of 64 bits."""
    n, nbytes = codes.shape
    if nbytes == W * 8 and codes.flags.c_contiguous:
        return codes.view(np.uint64)
    out = np.zeros((n, W * 8), np.uint8)
    out[:, :nbytes] = codes
    return out.view(np.uint64)


def empty_knn(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), MISSING, np.int32), np.full((nq, k), MISSING, np.int64)


def empty_range(nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(nq + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)


class SnapshotEngine(IndexEngine):
    """An in-memory engine over one snapshot. Subclasses implement ``_build(codes, words)`` and the
    position-level ``_knn_keys``/``_range_keys``, which return keys ``distance << POS_BITS | position``
    sorted per query; this class validates input, maps positions to ids and pads missing slots."""

    mutable = False

    def __init__(self, bits: int, **settings):
        super().__init__(bits, **settings)
        self.W = -(-self.nbytes // 8)
        self.n = 0
        self._ids: np.ndarray | None = None

    def build(self, codes, ids) -> None:
        self._take(codes, ids, self._build)

    def restore(self, codes, ids, params, arrays) -> None:
        self._take(codes, ids, lambda c, w: self._restore(c, w, params, arrays))

    def _take(self, codes, ids, make) -> None:
        if self._ids is not None:
            raise InvalidInputError(f"engine {self.name!r} is already built; build a new one for other codes")
        codes = check_codes(codes, self.nbytes, "codes")
        ids = np.asarray(ids, np.int64)
        if ids.shape != (len(codes),):
            raise InvalidInputError(f"{ids.shape} ids for {len(codes)} codes")
        self.n = len(ids)
        try:
            if self.n:
                make(codes, to_words(codes, self.W))
        except BaseException:
            self.n = 0
            raise
        self._ids = ids

    @abstractmethod
    def _build(self, codes: np.ndarray, words: np.ndarray) -> None: ...

    def _restore(self, codes: np.ndarray, words: np.ndarray, params: dict, arrays: dict) -> None:
        raise InvalidInputError(f"engine {self.name!r} has no tables to restore")

    def __len__(self) -> int:
        return self.n

    def _ready(self, q) -> np.ndarray:
        if self._ids is None:
            raise InvalidInputError(f"engine {self.name!r} is not built: call build(codes, ids) first")
        return check_codes(q, self.nbytes, "queries")

    def search(self, q, k, *, threads: int = 1, **opts):
        q, k = self._ready(q), check_k(k)
        kk = min(k, self.n)
        if kk == 0 or len(q) == 0:
            return empty_knn(len(q), k)
        D, I = self._decode(self._knn_keys(q, to_words(q, self.W), kk, threads, **opts))
        if kk < k:
            pad = ((0, 0), (0, k - kk))
            D, I = np.pad(D, pad, constant_values=MISSING), np.pad(I, pad, constant_values=MISSING)
        return D, I

    def range_search(self, q, r, *, threads: int = 1, **opts):
        q, r = self._ready(q), min(check_radius(r), self.bits)
        if self.n == 0 or len(q) == 0:
            return empty_range(len(q))
        lims, keys = self._range_keys(q, to_words(q, self.W), r, threads, **opts)
        # Every key is a result (no empty slots as in k-NN): two passes instead of _decode's six.
        return lims, (keys >> kernels.POS_BITS).astype(np.int32), self._ids[keys & kernels.POS_MASK]

    @abstractmethod
    def _knn_keys(self, q: np.ndarray, qwords: np.ndarray, k: int, threads: int) -> np.ndarray: ...

    @abstractmethod
    def _range_keys(self, q: np.ndarray, qwords: np.ndarray, r: int, threads: int): ...

    def _decode(self, keys: np.ndarray):
        missing = keys == kernels.EMPTY_KEY
        pos = keys & kernels.POS_MASK
        pos[missing] = 0
        D = (keys >> kernels.POS_BITS).astype(np.int32)
        I = self._ids[pos]
        D[missing], I[missing] = MISSING, MISSING
        return D, I
