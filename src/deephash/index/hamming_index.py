"""HammingIndex: the public, FAISS-like face of the index engines.

It owns the codes, ids and metadata; engines (``engines``) only search. The codes and ids live in an
immutable snapshot together with the engines built over them: a search reads the snapshot once, so
it never mixes one state's engine with another's ids, and a writer builds a new snapshot and swaps
it in with one assignment. Hence many threads may search while one adds or removes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from ..codes import check_bits
from ..errors import CorruptFileError, IncompatibleError, InvalidInputError, NotFoundError
from .engines import create_engine, engine_class, list_engines
from .engines.base import check_codes, check_k, check_radius, empty_knn, empty_range
from .storage import MANIFEST, MetadataStore, index_lock, load_index, load_tables, save_index
from .threads import default_threads

AUTO = "auto"
ENGINES = (AUTO, *list_engines())  # the built-in choices; engines registered later are accepted too
SMALL_N = 20_000  # auto: below this a linear scan is already cheap
MAX_PADDED = 1 << 26  # k > len(index): the -1 padded result may hold at most this many cells (~0.75 GB)
log = logging.getLogger("deephash.index")
# manifests written before per-engine settings held these keys beside "default"; load still reads them
_LEGACY_SETTINGS = {"mih_m": ("mih", "m"), "ivf_nlist": ("faiss-ivf", "nlist"), "ivf_nprobe": ("faiss-ivf", "nprobe")}


class _Snapshot:
    """One state of the index: codes and ids in insertion order (and, when the index keeps them, one float16
    feature row per code), and the engines built over them (filled on first use under the index's lock,
    never replaced)."""

    __slots__ = ("codes", "ids", "engines", "lookup", "features")

    def __init__(self, codes: np.ndarray, ids: np.ndarray, engines: dict | None = None,
                 features: np.ndarray | None = None):
        self.codes, self.ids, self.features = codes, ids, features
        self.engines: dict = engines or {}
        self.lookup: tuple[np.ndarray, np.ndarray] | None = None  # (argsort of ids, sorted ids)


class HammingIndex:
    """Exact search over packed binary codes (np.packbits order, ``bits/8`` bytes per code).

    ``search(q, k)`` returns the k nearest codes; among equal distances the code added
    earlier (smaller insertion position, which removals do not reorder) comes first, for
    every engine except ``faiss-flat``, which keeps FAISS's order within ties.
    ``range_search(q, r)`` returns every code with distance <= r: r is INCLUSIVE (FAISS's
    radius is exclusive). Engines: ``flat`` (exact scan, numba), ``mih`` (multi-index
    hashing, exact), ``faiss-flat``; ``auto`` uses MIH from 20,000 codes and falls back
    per query to the scan once MIH has verified about n/24 candidates for k-NN or n/2 for a
    radius search, roughly a scan's cost (an explicit ``engine="mih"`` never falls back). ``faiss-ivf`` is the one
    APPROXIMATE engine (settings ``nlist`` k-means lists, ``nprobe`` scanned per query):
    it can miss neighbours (and fill a row's tail with -1 when the probed lists hold fewer than k
    codes), never reports a wrong distance, keeps FAISS's choice among codes tied at the k-th
    distance, and is never chosen by ``auto``. ``milvus`` keeps the codes in a Milvus collection
    (``engine_settings={"uri": ..., "collection": ...}``, docs/scale.md): as the default engine it
    receives every add and remove, the folder staying the source of truth.

    Engines own their settings (``IndexEngine.defaults``); the index only passes them on.
    ``engine_options`` maps engine names to their settings, for any engine a search may pick with ``engine=``
    (the shape a manifest stores), e.g. ``HammingIndex(64, engine_options={"mih": {"m": 4}, "faiss-ivf":
    {"nprobe": 8}})``; ``engine_settings`` is the default engine's (for ``auto``, its MIH engine's), e.g.
    ``HammingIndex(64, "mih", engine_settings={"m": 4})``. In-memory engines are built on first use after
    add or remove; ``save`` also stores the default engine's tables (MIH's) so that ``load`` restores them
    instead of building on the first search. Safe for many concurrent
    searches and one writer in one process.

    ``keep_features(dim)`` makes the index keep a float16 vector of ``dim`` values per code (stored, added and
    removed with it; ``get_features``), which a two-stage search re-ranks candidates by.
    """

    def __init__(self, bits: int, engine: str = AUTO, threads: int | None = None, engine_settings: dict | None = None,
                 engine_options: dict[str, dict] | None = None):
        self.bits = check_bits(bits)
        self.nbytes = self.bits // 8
        self.engine = _check_engine(engine)
        if engine_options is not None and not isinstance(engine_options, dict):
            raise InvalidInputError(f"engine_options must map engine names to settings, got {engine_options!r:.100}")
        per: dict[str, dict] = {}
        for name, given in (engine_options or {}).items():
            if not isinstance(given, dict):
                raise InvalidInputError(f"engine_options[{name!r}] must be a dict of settings, got {given!r:.100}")
            per.setdefault(_settings_target(_check_engine(name)), {}).update(given)
        if engine_settings:
            given = per.setdefault(_settings_target(self.engine), {})
            for key, value in dict(engine_settings).items():
                if key in given:
                    raise InvalidInputError(f"engine setting {key!r} given twice (engine_settings and engine_options)")
                given[key] = value
        self._settings = self._check_settings(per)
        self.threads = threads or default_threads()
        self.checkpoint: dict | str | None = None
        self.class_names: list[str] | None = None
        self.code_bits = self.bits  # learned length; shorter codes are zero-padded to ``bits``
        self._lock = threading.Lock()  # serialises writers and engine builds; searches only take it to build
        self._snap = _Snapshot(np.empty((0, self.nbytes), np.uint8), np.empty(0, np.int64))
        self._next_id = 0
        self._store = MetadataStore()
        self._manifest: dict | None = None  # as read by load() or written by save(), for info()
        self._origin: str | None = None  # the folder (real path) that manifest belongs to

    def _check_settings(self, per: dict[str, dict]) -> dict[str, dict]:
        """Validated settings per engine name, as each engine normalises them."""
        return {name: create_engine(name, self.bits, **s).settings() for name, s in per.items()}

    def settings_of(self, engine: str | None = None) -> dict:
        """Settings an engine is built with (default engine when None; ``auto``: its MIH engine)."""
        name = _settings_target(_check_engine(engine or self.engine))
        return {**engine_class(name).defaults, **self._settings.get(name, {})}

    # ---- contents -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snap.ids)

    @property
    def ids(self) -> np.ndarray:
        return self._snap.ids

    @property
    def codes(self) -> np.ndarray:
        return self._snap.codes

    @property
    def feature_dim(self) -> int | None:
        """Length of the float vector kept per code, or None when the index keeps none."""
        f = self._snap.features
        return None if f is None else int(f.shape[1])

    def keep_features(self, dim: int) -> None:
        """From now on keep a ``dim``-value float16 vector per code (every ``add`` must give them). Only an
        empty index can start keeping features: earlier codes would have none."""
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidInputError(f"feature dimension must be a positive integer, got {dim!r}")
        with self._lock:
            snap = self._snap
            if snap.features is not None and snap.features.shape[1] == dim:
                return
            if len(snap.ids):
                raise IncompatibleError(f"cannot start keeping {dim}-value features in an index that holds "
                                        f"{len(snap.ids)} codes without them (build a new index)")
            self._snap = _Snapshot(snap.codes, snap.ids, snap.engines, np.empty((0, int(dim)), np.float16))

    def get_features(self, ids) -> np.ndarray:
        """(len(ids), dim) float16 features of the given ids (all must exist), in the order asked."""
        snap = self._snap
        if snap.features is None:
            raise InvalidInputError("this index keeps no features (build it with features to re-rank)")
        return np.asarray(snap.features[_positions(snap, _as_ids(ids))])

    def find_features(self, ids) -> np.ndarray:
        """Features of ids found by a search, read from ONE state; rows of ids removed since are NaN."""
        snap, ids = self._snap, _as_ids(ids)
        if snap.features is None:
            raise InvalidInputError("this index keeps no features (build it with features to re-rank)")
        at, held = _lookup(snap, ids)  # binary search: O(k log n) for k candidates, not a pass over every id
        out = np.full((len(ids), snap.features.shape[1]), np.nan, np.float32)
        out[held] = snap.features[at[held]]
        return out

    def add(self, codes, ids=None, metadata=None, features=None) -> np.ndarray:
        """Append codes; returns their ids (consecutive new ids when none are given). An index that keeps
        features needs ``features`` (n, dim), one row per code; one that keeps none refuses them."""
        codes = self._check_codes(codes, "codes")
        n = len(codes)
        if metadata is not None:
            metadata = list(metadata)
            if len(metadata) != n:
                raise InvalidInputError(f"{len(metadata)} metadata entries for {n} codes")
            if any(md is not None and not isinstance(md, dict) for md in metadata):
                raise InvalidInputError("metadata entries must be dicts or None")
        with self._lock:
            snap = self._snap
            features = _check_features(features, snap.features, n)
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                ids = _as_ids(ids)
                if len(ids) != n:
                    raise InvalidInputError(f"{len(ids)} ids for {n} codes")
                if len(ids) and ids.min() < 0:
                    raise InvalidInputError("ids must be non-negative")
                uniq, counts = np.unique(ids, return_counts=True)
                if (counts > 1).any():
                    raise InvalidInputError(f"duplicate ids in the batch: {uniq[counts > 1][:5].tolist()}")
                clash = ids[np.isin(ids, snap.ids)]
                if len(clash):
                    raise InvalidInputError(f"ids already in the index: {clash[:5].tolist()}")
            kept = self._mutable_engines(snap)
            if metadata is not None:
                self._store.add(ids, metadata)  # before the swap: a search that finds an id finds its metadata
            try:
                for eng in kept.values():
                    eng.add(codes, ids, **({"metadata": metadata} if eng.stores_metadata else {}))
            except BaseException:
                if metadata is not None:
                    self._store.remove(ids)
                raise
            new_codes = np.concatenate([snap.codes, codes]) if len(snap.codes) else codes.copy()
            new_features = None if features is None else np.concatenate([snap.features, features])
            self._snap = _Snapshot(new_codes, np.concatenate([snap.ids, ids]), kept, new_features)
            if n:
                self._next_id = max(self._next_id, int(ids.max()) + 1)
        return ids

    def remove(self, ids) -> int:
        """Remove codes by id (all must exist); the others keep their relative order."""
        ids = np.unique(_as_ids(ids))
        with self._lock:
            snap = self._snap
            keep = np.ones(len(snap.ids), bool)
            keep[_positions(snap, ids)] = False
            kept = self._mutable_engines(snap)
            for eng in kept.values():
                eng.remove(ids)
            self._snap = _Snapshot(snap.codes[keep], snap.ids[keep], kept,
                                   None if snap.features is None else snap.features[keep])
            self._store.remove(ids)
        return len(ids)

    def _mutable_engines(self, snap: _Snapshot) -> dict:
        """Engines that take add/remove themselves carry over to the next snapshot; the others are rebuilt.
        A default engine that stores codes itself (a remote collection) is attached first, so that every
        change reaches it (caller holds the lock)."""
        if self.engine != AUTO and engine_class(self.engine).mutable and self.engine not in snap.engines:
            snap.engines[self.engine] = self._new_engine(snap, self.engine)
        return {name: eng for name, eng in snap.engines.items() if eng.mutable}

    def _new_engine(self, snap: _Snapshot, name: str):
        eng = create_engine(name, self.bits, **self._settings.get(name, {}))
        if eng.stores_metadata:  # it may have to re-insert codes, with their metadata
            eng.build(snap.codes, snap.ids, metadata=self._store.get)
        else:
            eng.build(snap.codes, snap.ids)
        return eng

    def get_metadata(self, ids) -> list[dict | None]:
        """Metadata dict (path, labels, free-form fields) per id; None for unknown ids or none stored."""
        ids = _as_ids(ids)
        return self._store.get(ids.tolist())

    def get_codes(self, ids) -> np.ndarray:
        """Packed codes of the given ids (all must exist), in the order asked."""
        snap = self._snap
        return snap.codes[_positions(snap, _as_ids(ids))]

    def find_codes(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(codes of the ids present, mask of which ids are present), read from ONE state of the index, so a
        concurrent writer cannot make the two disagree."""
        snap, ids = self._snap, _as_ids(ids)
        held = np.isin(ids, snap.ids)
        return snap.codes[_positions(snap, ids[held])], held

    def set_ivf_nprobe(self, nprobe: int) -> None:
        """Lists the faiss-ivf engine scans per query (recall vs speed), without rebuilding its k-means
        (which, like the MIH tables, is built on first use after load, add or remove, not stored)."""
        with self._lock:
            self._settings.update(self._check_settings({"faiss-ivf": {**self.settings_of("faiss-ivf"),
                                                                        "nprobe": nprobe}}))
            eng = self._snap.engines.get("faiss-ivf")
            if eng is not None:
                eng.set_nprobe(self.settings_of("faiss-ivf")["nprobe"])

    # ---- search ---------------------------------------------------------------------

    def search(self, q, k: int, engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest codes per query: (distances int32, ids int64), both (nq, k).

        Rows are sorted by distance, ties by insertion position; when the index holds
        fewer than k codes the missing slots have id -1 and distance -1. Such padding is refused when it
        would exceed MAX_PADDED cells (nq * k): ask for at most ``len(index)`` neighbours instead, as
        ``ImageIndex.search`` does (its results hold min(k, len(index)) items).
        """
        q, k = self._check_codes(q, "queries"), check_k(k)
        snap = self._snap
        if k > len(snap.ids) and len(q) * k > MAX_PADDED:
            raise InvalidInputError(f"k={k} for {len(q)} queries asks for {len(q) * k:,} result slots, but the index "
                                    f"holds {len(snap.ids)} codes: ask for k <= {len(snap.ids)}")
        if len(snap.ids) == 0 or len(q) == 0:
            return empty_knn(len(q), k)
        name, opts = self._policy(engine, len(snap.ids))
        return self._built(snap, name).search(q, k, threads=self.threads, **opts)

    def range_search(self, q, r: int, engine: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within distance r of each query, r INCLUSIVE (d <= r; FAISS uses d < r).

        Returns FAISS-style (lims int64 (nq+1,), distances int32, ids int64): the results of
        query i are [lims[i], lims[i+1]), sorted by distance then insertion position.
        """
        q, r = self._check_codes(q, "queries"), min(check_radius(r), self.bits)
        snap = self._snap
        if len(snap.ids) == 0 or len(q) == 0:
            return empty_range(len(q))
        name, opts = self._policy(engine, len(snap.ids))
        return self._built(snap, name).range_search(q, r, threads=self.threads, **opts)

    def _policy(self, engine: str | None, n: int) -> tuple[str, dict]:
        """The engine a search uses and its search options: ``auto`` is the scan below SMALL_N codes,
        else MIH handing queries that cost about a scan over to the scan."""
        name = _check_engine(engine or self.engine)
        if name != AUTO:
            return name, {}
        return ("flat", {}) if n < SMALL_N else ("mih", {"fallback": True})

    def _built(self, snap: _Snapshot, name: str):
        """The snapshot's engine ``name``, built once (double-checked under the lock: concurrent
        first searches wait for one build instead of each building)."""
        eng = snap.engines.get(name)
        if eng is None:
            with self._lock:
                eng = self._build_locked(snap, name)
        return eng

    def _build_locked(self, snap: _Snapshot, name: str):
        eng = snap.engines.get(name)
        if eng is None:
            eng = self._new_engine(snap, name)
            snap.engines[name] = eng
        return eng

    def _engine(self, engine: str | None = None):
        """The built engine a search with ``engine`` would use now (for tests and benchmarks)."""
        snap = self._snap
        return self._built(snap, self._policy(engine, len(snap.ids))[0])

    def _check_codes(self, codes, what: str) -> np.ndarray:
        a = np.asarray(codes)
        if a.ndim == 1 and what == "queries":
            a = a[None, :]
        return check_codes(a, self.nbytes, what)

    # ---- persistence ----------------------------------------------------------------

    def save(self, path, tables: bool = True) -> Path:
        """Atomically write the index directory (see deephash.index.storage for the layout) under its writer
        lock. The manifest records the default engine and the settings of every configured engine. Saving back
        to the folder the index was loaded from refuses (IncompatibleError) if another writer saved there
        since; use ``HammingIndex.update(path)`` for a load-modify-save that no other writer can interleave.

        ``tables``: also store the search tables of the engine a search would use by default (MIH from
        SMALL_N codes under ``auto``), building them now if no search has yet, so that a loaded index answers
        its first search without a build (seconds at 10M codes)."""
        path = Path(path)
        with self._lock:  # one consistent state of codes, ids and metadata; searches go on
            snap = self._snap
            stored = None
            name = self._policy(None, len(snap.ids))[0]
            if tables and len(snap.ids) and engine_class(name).persistent:
                params, arrays = self._build_locked(snap, name).tables()
                stored = {"engine": name, "params": params, "arrays": arrays}
            header = {
                "bits": self.bits,
                "count": len(snap.ids),
                "next_id": self._next_id,
                "engine": {"default": self.engine, "settings": self._settings},
                "checkpoint": self.checkpoint,
                "class_names": self.class_names,
                "code_bits": self.code_bits,
            }
            same = self._manifest is not None and self._origin == os.path.realpath(path)
            expect = self._manifest.get("version", 0) if same else None
            self._manifest = save_index(path, codes=snap.codes, ids=snap.ids, store=self._store, header=header,
                                        expect_version=expect, tables=stored, features=snap.features)
            self._origin = os.path.realpath(path)
            return path

    @classmethod
    @contextlib.contextmanager
    def update(cls, path, timeout: float | None = None, threads: int | None = None):
        """``with HammingIndex.update(path) as index:`` load, change, and save when the block ends without an
        error, all under the folder's writer lock: concurrent updates (other processes included) run one after
        the other and none is lost. ``timeout``: seconds to wait for another writer (IndexLockedError)."""
        with index_lock(path, timeout):
            index = cls.load(path, mmap=False, threads=threads)
            yield index
            index.save(path)

    @classmethod
    def load(cls, path, mmap: bool = True, verify: bool = True, threads: int | None = None) -> "HammingIndex":
        """Open a saved index; codes are memory-mapped unless mmap=False. Corruption raises DeephashError.

        Stored search tables are checked (sizes, ``verify``: checksums) and restored. Being derived from the
        codes, a table file that is corrupt, missing or does not fit is not fatal: it is logged as a warning
        and the tables are built again on the first search, as for an index saved without them."""
        manifest, codes, ids, store, features = load_index(path, mmap=mmap, verify=verify)
        eng = manifest.get("engine") or {}
        try:
            index = cls(manifest["bits"], engine=eng.get("default", AUTO), threads=threads)
            if "settings" in eng:
                per = eng["settings"] or {}
            else:  # manifests before engine settings: {"default", "mih_m", "ivf_nlist", "ivf_nprobe"}
                per = {}
                for key, (name, setting) in _LEGACY_SETTINGS.items():
                    if eng.get(key) is not None:
                        per.setdefault(name, {})[setting] = eng[key]
            index._settings = index._check_settings(per)
        except (InvalidInputError, TypeError, ValueError, AttributeError) as e:
            raise CorruptFileError(f"{Path(path) / MANIFEST} is corrupt: engine {eng!r:.200}: {e}") from None
        index._snap = _Snapshot(codes, ids, index._restore_tables(path, manifest, codes, ids, mmap, verify),
                                features=features)
        index._next_id = manifest.get("next_id", int(ids.max()) + 1 if len(ids) else 0)
        index.checkpoint = manifest.get("checkpoint")
        index.class_names = manifest.get("class_names")
        index.code_bits = manifest.get("code_bits", index.bits)
        index._store = store
        index._manifest = manifest
        index._origin = os.path.realpath(path)
        return index

    def _restore_tables(self, path, manifest: dict, codes, ids, mmap: bool, verify: bool) -> dict:
        """{engine name: engine} restored from the tables the manifest names (empty: none, or unusable)."""
        try:
            found = load_tables(path, manifest, mmap=mmap, verify=verify)
            if found is None:
                return {}
            name, params, arrays = found
            if name not in list_engines() or not engine_class(name).persistent:
                raise CorruptFileError(f"index {path}: tables of unknown engine {name!r}")
            eng = create_engine(name, self.bits, **self._settings.get(name, {}))
            eng.restore(codes, ids, params, arrays)
        except CorruptFileError as e:
            log.warning("%s; the search tables will be built again on the first search", e)
            return {}
        except InvalidInputError as e:
            log.warning("index %s: stored search tables do not fit (%s); they will be built again on the first "
                        "search", path, e)
            return {}
        return {name: eng}

    def info(self) -> dict:
        out = {
            "bits": self.bits,
            "code_bits": self.code_bits,
            "count": len(self),
            "engine": self.engine,
            "engine_settings": self._settings,
            # the settings of the two built-in tunable engines, as `index info` has always shown them
            "mih_m": self.settings_of("mih")["m"],
            "ivf_nlist": self.settings_of("faiss-ivf")["nlist"],
            "ivf_nprobe": self.settings_of("faiss-ivf")["nprobe"],
            "next_id": self._next_id,
            "checkpoint": self.checkpoint,
            "class_names": self.class_names,
            "feature_dim": self.feature_dim,
        }
        if self._manifest is not None:
            out["format"] = self._manifest.get("format")
            out["version"] = self._manifest.get("version")
            out["files"] = self._manifest.get("files")
        return out


def _check_engine(engine: str) -> str:
    if engine != AUTO and engine not in list_engines():
        raise InvalidInputError(f"unknown engine {engine!r}; choose one of {', '.join((AUTO, *list_engines()))}")
    return engine


def _settings_target(engine: str) -> str:
    """The engine whose settings a default engine's settings are: ``auto``'s are its MIH engine's."""
    return "mih" if engine == AUTO else engine


def _check_features(features, kept: np.ndarray | None, n: int) -> np.ndarray | None:
    """``features`` for ``n`` new codes as float16 rows matching the kept ones (None when none are kept)."""
    if kept is None:
        if features is not None:
            raise InvalidInputError("this index keeps no features: add codes without them")
        return None
    if features is None:
        raise InvalidInputError(f"this index keeps {kept.shape[1]}-value features: add them with the codes")
    f = np.asarray(features)
    if f.ndim != 2 or f.shape != (n, kept.shape[1]) or not np.issubdtype(f.dtype, np.floating):
        raise InvalidInputError(f"features must be float ({n}, {kept.shape[1]}), got {f.dtype} {f.shape}")
    f = f.astype(np.float16)
    if not np.isfinite(f).all():
        raise InvalidInputError("features must be finite (and within float16's range)")
    return f


def _lookup(snap: _Snapshot, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(insertion positions, found mask) of ids in a snapshot; positions of missing ids are meaningless."""
    if snap.lookup is None:  # a pure function of the snapshot: racing threads compute the same value
        order = np.argsort(snap.ids, kind="stable")
        snap.lookup = (order, snap.ids[order])
    order, sorted_ids = snap.lookup
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return order[at], sorted_ids[at] == ids


def _positions(snap: _Snapshot, ids: np.ndarray) -> np.ndarray:
    """Insertion positions of ids in a snapshot (all must exist)."""
    at, found = _lookup(snap, ids)
    if not found.all():
        raise NotFoundError(f"ids not in the index: {ids[~found][:5].tolist()}")
    return at


def _as_ids(ids) -> np.ndarray:
    a = np.atleast_1d(np.asarray(ids))
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise InvalidInputError(f"ids must be a 1-D sequence of integers, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


__all__ = ["ENGINES", "HammingIndex", "index_from_codes"]


def index_from_codes(cf, **kwargs) -> HammingIndex:
    """An index holding a codes file's codes with its ids, paths, label names and provenance."""
    index = HammingIndex(cf.index_bits, **kwargs)
    index.add(cf.codes, ids=cf.ids, metadata=cf.metadata_rows())
    index.code_bits = cf.bits
    index.class_names = cf.class_names
    index.checkpoint = cf.meta.get("checkpoint") if isinstance(cf.meta, dict) else None
    return index
