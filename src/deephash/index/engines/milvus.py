"""Milvus as an index engine: the codes live in a Milvus collection, searched with the HAMMING metric.

For indexes past one machine's memory (or that need replicas and many writers), the codes go to a Milvus
server or cluster (``uri="http://host:19530"``), or, for tests and small installs, to Milvus Lite, embedded
in this process and storing a local file (``uri="path/to/codes.db"``). One collection per index: an INT64
primary key (the deephash id), the code as a ``BINARY_VECTOR`` and the metadata as scalar fields
(``path``, ``labels``, and for IAH category codes ``category`` and ``box``; other keys go to ``extra``), so
other Milvus clients can read and filter them too.

``HammingIndex`` keeps its folder (codes, ids, metadata) as the source of truth and forwards every add and
remove here (``mutable = True``); the folder's manifest records the URI and the collection, never a
password: credentials come from ``MILVUS_TOKEN``, or ``MILVUS_USER`` and ``MILVUS_PASSWORD``. When a folder
is opened, its collection must exist; one whose row count differs from the folder's (a writer that died
between Milvus and its save) is brought back in line, the folder winning.

Milvus caps a search at 16,384 results (``MAX_TOPK``): larger k is refused, and a radius search whose
answer reaches the cap is redone over halves of the id range until no part does, so radius results
stay complete. ``BIN_FLAT`` (default) is exact; ``BIN_IVF_FLAT`` (``nlist``, ``nprobe``) is approximate
and needs a server (Milvus Lite only runs ``BIN_FLAT``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from urllib.parse import urlparse

import numpy as np

from ...errors import DeephashError, IncompatibleError, InvalidInputError, NotFoundError, UnavailableError
from ...utils.progress import tqdm
from .base import IndexEngine, check_codes, check_k, check_radius, empty_knn, empty_range, positive_int, register_engine

MAX_TOPK = 16_384  # Milvus's limit on a search's limit (topk) and on a query's rows
MAX_ID = (1 << 63) - 1  # ids are non-negative int64 (HammingIndex refuses others)
INSERT_BATCH = 10_000  # rows per insert: well under gRPC's 64 MB message limit with metadata
RESULT_BUDGET = 1 << 20  # results per search call (queries * limit), same reason
INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")  # Milvus collection names
LITE_FILE = re.compile(r"^[A-Za-z0-9.\-_]{1,35}$")  # what Milvus Lite accepts as its file's name
FIELDS = ("path", "labels", "category", "box")  # metadata keys stored in their own fields; the rest in extra
TOKEN_ENV, USER_ENV, PASSWORD_ENV = "MILVUS_TOKEN", "MILVUS_USER", "MILVUS_PASSWORD"

_CLIENTS: dict[tuple, object] = {}  # one client per (uri, db, credentials) and process: searches share it
_CLIENTS_LOCK = threading.Lock()


@register_engine("milvus")
class MilvusEngine(IndexEngine):
    """A Milvus collection. Settings: ``uri`` (server URL or Milvus Lite file), ``collection``, ``db_name``,
    ``index_type`` (BIN_FLAT exact, BIN_IVF_FLAT approximate) with ``nlist``/``nprobe`` for IVF, ``timeout``
    (seconds to wait for the server when connecting). k-NN rows
    are sorted by distance, then id."""

    mutable = True
    stores_metadata = True
    ties = "found-id"
    rank = 4
    defaults = {"uri": None, "collection": None, "db_name": "", "index_type": "BIN_FLAT", "nlist": 1024,
                "nprobe": 16, "timeout": 10.0}

    def _validate(self, s: dict) -> dict:
        uri = s["uri"]
        if not isinstance(uri, str) or not uri:
            raise InvalidInputError("engine 'milvus' needs a uri: http://host:19530 (a Milvus server) or a local "
                                    "file such as codes.db (Milvus Lite)")
        if is_remote(uri):
            if urlparse(uri).password or urlparse(uri).username:
                raise InvalidInputError(f"the Milvus uri must not hold credentials (the index folder records it): "
                                        f"set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}, instead")
        else:
            uri = os.path.abspath(uri)
            if not uri.endswith(".db") or not LITE_FILE.match(os.path.basename(uri)):
                raise InvalidInputError(f"Milvus Lite file {uri!r}: the name must end in .db and be at most 35 "
                                        "letters, digits, '.', '-' or '_' (or give an http:// server uri)")
        coll = s["collection"]
        if not isinstance(coll, str) or not NAME.match(coll):
            raise InvalidInputError(f"Milvus collection name {coll!r} must start with a letter or '_' and hold only "
                                    "letters, digits and '_' (at most 255)")
        if s["index_type"] not in INDEX_TYPES:
            raise InvalidInputError(f"milvus index_type must be one of {', '.join(INDEX_TYPES)}, "
                                    f"got {s['index_type']!r}")
        if not isinstance(s["db_name"], str):
            raise InvalidInputError(f"milvus db_name must be a string, got {s['db_name']!r}")
        if not isinstance(s["timeout"], (int, float)) or isinstance(s["timeout"], bool) or not s["timeout"] > 0:
            raise InvalidInputError(f"milvus timeout must be positive seconds, got {s['timeout']!r}")
        return {**s, "uri": uri, "timeout": float(s["timeout"]),
                "nlist": positive_int("milvus setting nlist", s["nlist"]),
                "nprobe": positive_int("milvus setting nprobe", s["nprobe"])}

    @classmethod
    def part_settings(cls, settings: dict, part: str) -> dict:
        return {**settings, "collection": f"{settings.get('collection')}_{part}"}

    def __init__(self, bits: int, **settings):
        super().__init__(bits, **settings)
        self.uri, self.collection = self._settings["uri"], self._settings["collection"]
        self._client = None
        self._count = 0
        self._id_span = (0, 0)  # [lo, hi) bounds every id held, for splitting radius searches
        self.progress = True

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self._settings["index_type"] == "BIN_FLAT"

    def __len__(self) -> int:
        return self._count

    # ---- connection and errors --------------------------------------------------------------------

    @contextlib.contextmanager
    def _calls(self, what: str):
        """Milvus's and gRPC's exceptions as one deephash error naming the server and collection."""
        from pymilvus.exceptions import MilvusException

        try:
            yield
        except DeephashError:
            raise
        except MilvusException as e:
            msg = str(getattr(e, "message", "") or e)
            where = f"Milvus collection {self.collection!r} at {self.uri}"
            if "not found" in msg.lower() or "can't find" in msg.lower():
                raise NotFoundError(f"{where} does not exist ({what})") from None
            if "connect" in msg.lower() or "unavailable" in msg.lower() or getattr(e, "code", None) == 2:
                raise UnavailableError(f"cannot reach Milvus at {self.uri} ({what}): {msg}") from None
            raise IncompatibleError(f"{where} refused to {what}: {msg}") from None
        except Exception as e:  # grpc.RpcError and socket errors of a server that went away
            if type(e).__module__.startswith(("grpc", "pymilvus")) or isinstance(e, OSError):
                raise UnavailableError(f"cannot reach Milvus at {self.uri} ({what}): {e}") from None
            raise

    def client(self):
        if self._client is None:
            self._client = connect(self.uri, self._settings["db_name"], self._settings["timeout"])
        return self._client

    # ---- building ---------------------------------------------------------------------------------

    def build(self, codes, ids, metadata=None) -> None:
        """Attach to the collection and make it hold exactly these codes. A new (empty) index creates its
        collection, refusing to take over one that holds codes; an index opened from its folder needs its
        collection, and one whose row count differs is synced to the folder. ``metadata``: a function
        ids -> list of dicts (for codes that must be re-inserted)."""
        codes = check_codes(codes, self.nbytes, "codes")
        ids = np.asarray(ids, np.int64)
        c = self.client()
        with self._calls("open it"):
            exists = c.has_collection(self.collection)
            if not exists:
                if len(ids):
                    raise NotFoundError(
                        f"Milvus collection {self.collection!r} at {self.uri} does not exist, but this index holds "
                        f"{len(ids)} codes for it: it was dropped or the uri is wrong; rebuild the index with "
                        "deephash index build --engine milvus")
                self._create()
            else:
                self._check_schema()
                held = self._row_count()
                if len(ids) == 0 and held:
                    raise IncompatibleError(
                        f"Milvus collection {self.collection!r} at {self.uri} already holds {held} codes: choose "
                        "another collection name, or drop that one first (deephash.index.engines.milvus."
                        "drop_collection)")
                if held != len(ids):
                    self._sync(codes, ids, metadata)
                c.load_collection(self.collection)
        self._count = len(ids)
        self._id_span = (int(ids.min()), int(ids.max()) + 1) if len(ids) else (0, 0)

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                       description=f"deephash {self.bits}-bit codes")
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("code", DataType.BINARY_VECTOR, dim=self.bits)
        s.add_field("path", DataType.VARCHAR, max_length=65_535)
        s.add_field("labels", DataType.JSON)
        s.add_field("category", DataType.VARCHAR, max_length=1_024)
        s.add_field("box", DataType.JSON)  # not ARRAY: Milvus Lite 2.5 inserts ARRAY rows about 15x slower
        s.add_field("extra", DataType.JSON)
        params = self.client().prepare_index_params()
        extra = {"nlist": self._settings["nlist"]} if self._settings["index_type"] == "BIN_IVF_FLAT" else {}
        params.add_index("code", index_type=self._settings["index_type"], metric_type="HAMMING", params=extra)
        self.client().create_collection(self.collection, schema=s, index_params=params, consistency_level="Strong")

    def _check_schema(self) -> None:
        desc = self.client().describe_collection(self.collection)
        fields = {f["name"]: f for f in desc["fields"]}
        code = fields.get("code")
        if code is None or set(fields) != {"id", "code", *FIELDS, "extra"}:
            raise IncompatibleError(f"Milvus collection {self.collection!r} at {self.uri} was not made by deephash "
                                    f"(fields {sorted(fields)})")
        if int(code["params"].get("dim", -1)) != self.bits:
            raise IncompatibleError(f"Milvus collection {self.collection!r} at {self.uri} holds "
                                    f"{code['params'].get('dim')}-bit codes, this index {self.bits}-bit ones")

    def _row_count(self) -> int:
        res = self.client().query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _sync(self, codes: np.ndarray, ids: np.ndarray, metadata) -> None:
        """Delete the collection's ids the folder lacks, insert the folder's codes the collection lacks."""
        held = np.asarray(self._held_ids(0, MAX_ID), np.int64)
        extra = np.setdiff1d(held, ids)
        if len(extra):
            self._delete(extra)
        missing = np.flatnonzero(~np.isin(ids, held))
        if len(missing):
            meta = metadata(ids[missing].tolist()) if metadata is not None else None
            self._insert(codes[missing], ids[missing], meta)

    def _held_ids(self, lo: int, hi: int) -> list[int]:
        """Ids held in [lo, hi): a query answers at most MAX_TOPK rows, so a full answer is split in halves.
        (pymilvus 2.5's query_iterator fails on this schema once rows were deleted.)"""
        rows = self.client().query(self.collection, filter=f"id >= {lo} and id < {hi}", output_fields=["id"],
                                   limit=MAX_TOPK)
        if len(rows) < MAX_TOPK or hi - lo <= 1:
            return [row["id"] for row in rows]
        mid = lo + (hi - lo) // 2
        return self._held_ids(lo, mid) + self._held_ids(mid, hi)

    # ---- writing ----------------------------------------------------------------------------------

    def add(self, codes, ids, metadata=None) -> None:
        codes = check_codes(codes, self.nbytes, "codes")
        ids = np.asarray(ids, np.int64)
        if len(ids) != len(codes):
            raise InvalidInputError(f"{len(ids)} ids for {len(codes)} codes")
        if metadata is not None and len(metadata) != len(ids):
            raise InvalidInputError(f"{len(metadata)} metadata entries for {len(ids)} codes")
        if not len(ids):
            return
        with self._calls("insert codes"):
            self._insert(codes, ids, metadata)
        self._count += len(ids)
        lo, hi = self._id_span if self._id_span[1] > self._id_span[0] else (int(ids.min()), int(ids.min()) + 1)
        self._id_span = (min(lo, int(ids.min())), max(hi, int(ids.max()) + 1))

    def _insert(self, codes: np.ndarray, ids: np.ndarray, metadata) -> None:
        n = len(ids)
        with tqdm(total=n, desc=f"milvus insert {self.collection}", unit="code",
                  disable=not self.progress or n < 2 * INSERT_BATCH) as bar:
            for s in range(0, n, INSERT_BATCH):
                e = min(n, s + INSERT_BATCH)
                rows = [to_row(int(i), code.tobytes(), None if metadata is None else metadata[s + j])
                        for j, (i, code) in enumerate(zip(ids[s:e], codes[s:e]))]
                self.client().insert(self.collection, rows)
                bar.update(e - s)

    def remove(self, ids) -> None:
        ids = np.unique(np.asarray(ids, np.int64))
        with self._calls("delete codes"):
            self._delete(ids)
        self._count = max(0, self._count - len(ids))

    def _delete(self, ids: np.ndarray) -> None:
        for s in range(0, len(ids), INSERT_BATCH):
            self.client().delete(self.collection, ids=ids[s:s + INSERT_BATCH].tolist())

    # ---- reading ----------------------------------------------------------------------------------

    def _params(self, **range_params) -> dict:
        params = dict(range_params)
        if self._settings["index_type"] == "BIN_IVF_FLAT":
            params["nprobe"] = self._settings["nprobe"]
        return {"metric_type": "HAMMING", "params": params}

    def _search(self, q: np.ndarray, limit: int, params: dict, filter: str = "") -> list:
        data = [row.tobytes() for row in q]
        return self.client().search(self.collection, data=data, anns_field="code", limit=limit, filter=filter,
                                    search_params=params, output_fields=[])

    def search(self, q, k, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        q, k = check_codes(q, self.nbytes, "queries"), check_k(k)
        D, I = empty_knn(len(q), k)
        limit = min(k, self._count)
        if limit > MAX_TOPK:
            raise InvalidInputError(f"k={k}: Milvus answers at most {MAX_TOPK} neighbours per query")
        if limit == 0 or len(q) == 0:
            return D, I
        step = max(1, RESULT_BUDGET // limit)
        with self._calls("search"):
            for s in range(0, len(q), step):
                for j, hits in enumerate(self._search(q[s:s + step], limit, self._params())):
                    d, ids = _sorted_hits(hits)
                    D[s + j, :len(d)], I[s + j, :len(d)] = d, ids
        return D, I

    def range_search(self, q, r, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Milvus keeps range_filter <= d < radius for HAMMING, so an inclusive r is radius r + 1.
        q, r = check_codes(q, self.nbytes, "queries"), min(check_radius(r), self.bits)
        if self._count == 0 or len(q) == 0:
            return empty_range(len(q))
        params = self._params(radius=r + 1)
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        step = max(1, RESULT_BUDGET // MAX_TOPK)
        with self._calls("search"):
            for s in range(0, len(q), step):
                for j, hits in enumerate(self._search(q[s:s + step], MAX_TOPK, params)):
                    if len(hits) >= MAX_TOPK:  # maybe cut off by the cap: split the id range until no part is
                        hits = self._range_split(q[s + j:s + j + 1], params, *self._id_span)
                    rows.append(_sorted_hits(hits))
        lims = np.zeros(len(q) + 1, np.int64)
        np.cumsum([len(d) for d, _ in rows], out=lims[1:])
        return (lims, np.concatenate([d for d, _ in rows]).astype(np.int32),
                np.concatenate([i for _, i in rows]).astype(np.int64))

    def _range_split(self, q: np.ndarray, params: dict, lo: int, hi: int) -> list:
        hits = self._search(q, MAX_TOPK, params, filter=f"id >= {lo} and id < {hi}")[0]
        if len(hits) < MAX_TOPK or hi - lo <= 1:
            return list(hits)
        mid = (lo + hi) // 2
        return self._range_split(q, params, lo, mid) + self._range_split(q, params, mid, hi)

    def get_metadata(self, ids) -> list[dict | None]:
        """Metadata per id as stored in the collection (None for ids it does not hold)."""
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, np.int64))]
        found: dict[int, dict | None] = {}
        with self._calls("read metadata"):
            for s in range(0, len(ids), INSERT_BATCH):
                for row in self.client().query(self.collection, ids=ids[s:s + INSERT_BATCH],
                                               output_fields=[*FIELDS, "extra"]):
                    found[int(row["id"])] = from_row(row)
        return [found.get(i) for i in ids]

    def get_codes(self, ids) -> np.ndarray:
        """Packed codes of ids held in the collection (all must be), in the order asked."""
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, np.int64))]
        out = np.empty((len(ids), self.nbytes), np.uint8)
        got: dict[int, bytes] = {}
        with self._calls("read codes"):
            for s in range(0, len(ids), INSERT_BATCH):
                for row in self.client().query(self.collection, ids=ids[s:s + INSERT_BATCH], output_fields=["code"]):
                    code = row["code"]
                    got[int(row["id"])] = code[0] if isinstance(code, list) else code
        missing = [i for i in ids if i not in got]
        if missing:
            raise NotFoundError(f"ids not in Milvus collection {self.collection!r}: {missing[:5]}")
        for n, i in enumerate(ids):
            out[n] = np.frombuffer(got[i], np.uint8)
        return out


def _sorted_hits(hits) -> tuple[np.ndarray, np.ndarray]:
    d = np.fromiter((h["distance"] for h in hits), np.float64, len(hits)).round().astype(np.int32)
    ids = np.fromiter((h["id"] for h in hits), np.int64, len(hits))
    order = np.lexsort((ids, d))
    return d[order], ids[order]


def to_row(i: int, code: bytes, md: dict | None) -> dict:
    """One collection row. ``extra`` also lists which of the own-field keys the metadata had ("_has"),
    so metadata reads give back exactly what was stored, None included."""
    row = {"id": i, "code": code, "path": "", "labels": [], "category": "", "box": []}
    if md is None:
        row["extra"] = {"_has": None}
        return row
    md = dict(md)
    has = []
    for key in FIELDS:
        if key in md:
            value = md.pop(key)
            if key == "path":
                value = os.fsdecode(value)
            elif key == "category":
                value = str(value)
            elif key == "box":
                value = [float(v) for v in value]
                if len(value) > 4:
                    raise InvalidInputError(f"a box holds 4 numbers, got {len(value)} for id {i}")
            row[key] = value
            has.append(key)
    md["_has"] = has
    row["extra"] = md
    return row


def from_row(row: dict) -> dict | None:
    extra = dict(row.get("extra") or {})
    has = extra.pop("_has", None)
    if has is None:
        return None
    return {**extra, **{key: row[key] for key in has}}


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme.lower() in ("http", "https", "tcp", "grpc", "unix")


def credentials() -> dict:
    """Credentials for a server from the environment (never from the index folder)."""
    if os.environ.get(TOKEN_ENV):
        return {"token": os.environ[TOKEN_ENV]}
    if os.environ.get(USER_ENV):
        return {"user": os.environ[USER_ENV], "password": os.environ.get(PASSWORD_ENV, "")}
    return {}


def connect(uri: str, db_name: str = "", timeout: float = 10.0):
    """The process's client for ``uri`` (Milvus Lite is started on first use of its file)."""
    try:
        with warnings.catch_warnings():  # milvus-lite 2.5 imports pkg_resources, which warns
            warnings.simplefilter("ignore")
            from pymilvus import MilvusClient
            from pymilvus.exceptions import MilvusException
    except ImportError:
        raise InvalidInputError("engine 'milvus' needs pymilvus (and milvus-lite for a local file): "
                                "pip install 'deephash[milvus]'") from None
    for name in ("pymilvus", "pymilvus.milvus_client"):  # its errors reach the user as deephash errors
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cred = credentials()
    key = (uri, db_name, tuple(sorted(cred.items())))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            if not is_remote(uri) and not os.path.isdir(os.path.dirname(uri)):
                raise NotFoundError(f"cannot open Milvus Lite file {uri}: its folder does not exist")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    client = MilvusClient(uri=uri, db_name=db_name, timeout=timeout, **cred)
            except (MilvusException, OSError, RuntimeError) as e:
                hint = "" if is_remote(uri) else " (Milvus Lite opens a file in one process at a time)"
                raise UnavailableError(f"cannot reach Milvus at {uri}{hint}: {getattr(e, 'message', e)}") from None
            _CLIENTS[key] = client
    return client


def close_clients() -> None:
    """Close this process's Milvus clients and stop the Milvus Lite servers it started."""
    with _CLIENTS_LOCK:
        for (uri, *_), client in _CLIENTS.items():
            with contextlib.suppress(Exception):
                client.close()
            if not is_remote(uri):
                from milvus_lite.server_manager import server_manager_instance

                with contextlib.suppress(Exception):
                    server_manager_instance.release_server(uri)
        _CLIENTS.clear()


def drop_collection(uri: str, collection: str, db_name: str = "") -> bool:
    """Drop a collection (e.g. one an index no longer uses); returns whether it existed."""
    client = connect(uri if is_remote(uri) else os.path.abspath(uri), db_name)
    if not client.has_collection(collection):
        return False
    client.drop_collection(collection)
    return True


def collection_name(text: str) -> str:
    """A valid collection name derived from free text (e.g. an index folder's name)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)[:255] or "deephash"
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"[:255]
