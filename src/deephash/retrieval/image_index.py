"""``ImageIndex``: a trained model, its index and the images' metadata behind one object.

Every entry point (CLI, HTTP service, scripts) searches through this class, so a DSH index and an IAH index
answer the same calls. An index folder is a ``HammingIndex`` folder (one semantic code per image, with its
path and labels); an IAH index also holds ``category/``, a ``CategoryIndex`` with one code per (image,
category present) and the box of the proposal that produced it. Folders written by the earlier
``iah-encode`` (``iah.json`` + ``semantic/`` + ``category/``) still open.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..codes import CodesFile, hamming_distances
from ..errors import CorruptFileError, IncompatibleError, InvalidInputError
from ..index import CategoryIndex, HammingIndex, index_from_codes
from ..index.storage import MANIFEST, check_target, index_lock, read_manifest
from .results import CategoryQuery, QueryResult, SearchResult
from .search_args import check_search_args

if TYPE_CHECKING:
    from ..runs import Encoded
    from .encoder import Encoder

CATEGORY_DIR = "category"
LEGACY_IAH_MANIFEST = "iah.json"


@dataclass
class AddResult:
    ids: np.ndarray                                 # ids given to the added images, in input order
    failures: list = field(default_factory=list)    # (input, reason) of images that could not be read


class ImageIndex:
    """Search, add and remove images by pixels, codes or ids.

    The model is loaded on first use from the checkpoint the index records (or the one given), so opening an
    index to search by codes or ids needs no model. Writes (``add``, ``remove``, ``save``) take a lock;
    searches read the indexes, which are safe for concurrent readers.
    """

    def __init__(self, semantic: HammingIndex, category: CategoryIndex | None = None, path: str | Path | None = None,
                 checkpoint: str | Path | None = None, threshold: float | None = None,
                 codes_file: CodesFile | None = None):
        self.semantic = semantic
        self.category = category
        self.path = None if path is None else Path(path)
        self.checkpoint = str(checkpoint) if checkpoint else (semantic.checkpoint if isinstance(semantic.checkpoint, str)
                                                              else None)
        if category is not None and threshold is not None:
            category.threshold = float(threshold)
        self.codes_file = codes_file  # the source when built in memory from a codes file (for drawing)
        self.failures: list = []  # inputs ``build`` could not read
        self._encoder: Encoder | None = None
        self._graph = None  # the model's recorded ONNX graph for queries (QueryGraph), False when it has none
        self._legacy = False
        self._lock = threading.RLock()

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def from_codes(cls, codes: CodesFile, **engine) -> "ImageIndex":
        """An in-memory index over a codes file's codes, ids, paths and labels (nothing written)."""
        return cls(index_from_codes(codes, **engine), codes_file=codes)

    @classmethod
    def build(cls, checkpoint: str | Path, dataset, threshold: float = 0.5, progress: bool = False,
              features: bool = False, **engine) -> "ImageIndex":
        """Encode a dataset with a trained model into a new index (call ``save(path)`` to write it).
        IAH models also fill the category index with each image's code for every category whose
        probability exceeds ``threshold`` (its most probable category always). ``features``: also keep each
        image's pooled features (float16, from the same forward pass) for ``search(..., rerank=)``; images
        added later get theirs too."""
        from .encoder import Encoder

        encoder = Encoder(checkpoint)
        enc = encoder.encode_dataset(dataset, progress=progress, features=features)
        rows = [_dataset_row(dataset, int(i)) for i in enc.indices]
        semantic = HammingIndex(-(-encoder.bits // 8) * 8, **engine)
        semantic.code_bits = encoder.bits
        semantic.class_names = list(dataset.class_names)
        semantic.checkpoint = str(Path(encoder.checkpoint).resolve())
        if features:
            semantic.keep_features(enc.features.shape[1])
        category = None
        if encoder.method == "iah":
            category = CategoryIndex(semantic.bits, list(dataset.class_names), engine.get("engine", "auto"),
                                     engine.get("engine_settings"))
            category.checkpoint = semantic.checkpoint
        index = cls(semantic, category, threshold=threshold)
        index._encoder = encoder
        index._insert(enc, rows, ids=np.asarray(enc.indices, np.int64))
        index.failures = enc.failures
        return index

    # ---- properties --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.semantic)

    @property
    def bits(self) -> int:
        return self.semantic.code_bits

    @property
    def class_names(self) -> list[str]:
        return list(self.semantic.class_names or (self.category.class_names if self.category else []))

    @property
    def threshold(self) -> float:
        """IAH: an image is indexed under every category whose probability exceeds this (and its best one)."""
        return self.category.threshold if self.category is not None else 0.5

    @property
    def method(self) -> str:
        """The method of the loaded model; before one is loaded, iah when the index holds category codes."""
        if self._encoder is not None:
            return self._encoder.method
        return "iah" if self.category is not None else "dsh"

    @property
    def model_name(self) -> str | None:
        """The loaded model's backbone; None until the model is loaded (naming it is not worth loading it)."""
        return self._encoder.config.model if self._encoder is not None else None

    @property
    def nbytes(self) -> int:
        """Bytes per packed code: ``bits`` rounded up to whole bytes (the padding bits are zero)."""
        return self.semantic.nbytes

    @property
    def feature_dim(self) -> int | None:
        """Length of the feature vector kept per image, or None when the index keeps none."""
        return self.semantic.feature_dim

    # ---- contents ----------------------------------------------------------------------------------
    # What callers read of the indexed images, so that none reaches into the semantic ``HammingIndex``.

    @property
    def ids(self) -> np.ndarray:
        """Ids of the indexed images, in index order."""
        return self.semantic.ids

    @property
    def codes(self) -> np.ndarray:
        """Packed semantic codes of every indexed image, in ``ids`` order."""
        return self.semantic.codes

    def get_codes(self, ids) -> np.ndarray:
        """Packed semantic codes of indexed images, in the order asked (an unknown id: ``NotFoundError``)."""
        return self.semantic.get_codes(ids)

    def get_metadata(self, ids) -> list[dict | None]:
        """What is stored with each image (path, labels, free-form fields); None for an unknown id."""
        return self.semantic.get_metadata(ids)

    def get_features(self, ids) -> np.ndarray:
        """(len(ids), feature_dim) float16 feature vectors of indexed images (an index that keeps them)."""
        return self.semantic.get_features(ids)

    def item(self, item_id: int) -> dict:
        """One indexed image: ``{"id", "code"`` (packed uint8), ``**metadata}`` (an unknown id: ``NotFoundError``)."""
        code = self.semantic.get_codes([item_id])[0]
        return {"id": int(item_id), "code": code, **(self.semantic.get_metadata([item_id])[0] or {})}

    @property
    def encoder(self) -> Encoder:
        """The model that turns images into this index's codes (loaded once, on first use)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from .encoder import Encoder

                    ckpt = self._checkpoint_path()
                    encoder = Encoder(ckpt)
                    if encoder.bits != self.bits:
                        raise IncompatibleError(f"checkpoint {ckpt} makes {encoder.bits}-bit codes but the index holds "
                                                f"{self.bits}-bit codes")
                    if self.category is not None and encoder.method != "iah":
                        raise IncompatibleError(f"checkpoint {ckpt} is a {encoder.method} model, but this index holds "
                                                "category-aware codes, which only an IAH model makes")
                    self._encoder = encoder
        return self._encoder

    def use_checkpoint(self, checkpoint: str | Path) -> None:
        """Encode queries with this checkpoint instead of the recorded one."""
        with self._lock:
            self.checkpoint, self._encoder, self._graph = str(checkpoint), None, None

    def use_encoder(self, encoder: Encoder) -> None:
        """Encode with this already loaded model (e.g. one set up with other runtime settings) instead of
        loading the recorded checkpoint; it must make this index's codes."""
        if encoder.bits != self.bits:
            raise IncompatibleError(f"the model makes {encoder.bits}-bit codes but the index holds {self.bits}-bit codes")
        with self._lock:
            self._encoder, self._graph = encoder, None

    def _checkpoint_path(self) -> Path:
        if not self.checkpoint:
            raise InvalidInputError("this index records no model: give a checkpoint to search by image")
        p = Path(self.checkpoint)
        if not p.is_absolute() and self.path is not None and (self.path / p).exists():
            p = self.path / p  # a relative path is the index folder's own (deephash up's model/last.ckpt) first
        return p

    # ---- encode / add / remove -----------------------------------------------------------------------

    @property
    def keeps_features(self) -> bool:
        """Whether the index keeps a feature vector per image (for ``search(..., rerank=)``)."""
        return self.semantic.feature_dim is not None

    def encode(self, images, skip_unreadable: bool = False, features: bool = False) -> Encoded:
        """Codes of images (paths or uint8 (H, W, 3) arrays of any size) with the index's model; ``features``:
        also their feature vectors, from the same forward pass."""
        return self.encoder.encode_images(images, skip_unreadable=skip_unreadable, features=features)

    def add(self, images, metadata: list[dict | None] | None = None) -> AddResult:
        """Encode and add images (paths or arrays); unreadable ones are skipped and listed. ``metadata`` gives one
        dict per image (stored with it; a path input is stored as ``path`` unless the dict sets one). An index
        that keeps features stores each image's too."""
        images = list(images)
        if metadata is not None and len(metadata) != len(images):
            raise InvalidInputError(f"{len(metadata)} metadata entries for {len(images)} images")
        enc = self.encode(images, skip_unreadable=True, features=self.keeps_features)
        rows = []
        for i in enc.indices:
            row = {"path": str(images[i])} if isinstance(images[i], (str, Path)) else {}
            row.update((metadata[i] or {}) if metadata is not None else {})
            rows.append(row)
        with self._lock:
            ids = self._insert(enc, rows)
        return AddResult(ids, enc.failures)

    def add_encoded(self, enc: Encoded, metadata: list[dict]) -> np.ndarray:
        """Add images this index's model has already encoded (``enc``, one ``metadata`` dict each, which names the
        ``path``), e.g. from the backbone features a model fit just computed, so that no image is run through
        the backbone twice. Returns their ids."""
        if len(metadata) != len(enc.codes):
            raise InvalidInputError(f"{len(metadata)} metadata entries for {len(enc.codes)} codes")
        with self._lock:
            return self._insert(enc, [dict(m) for m in metadata])

    def _insert(self, enc: Encoded, rows: list[dict], ids: np.ndarray | None = None) -> np.ndarray:
        if self.category is not None and enc.category is None:
            raise IncompatibleError("this index holds category-aware codes but the model makes none (not an IAH model)")
        if self.keeps_features and enc.features is not None and enc.features.shape[1] != self.semantic.feature_dim:
            raise IncompatibleError(f"the model gives {enc.features.shape[1]}-value features but the index keeps "
                                    f"{self.semantic.feature_dim}-value ones")
        ids = self.semantic.add(enc.codes, ids=ids, metadata=rows, features=enc.features if self.keeps_features else None)
        if self.category is not None and len(ids):
            present = enc.probs > self.threshold
            present[np.arange(len(ids)), enc.probs.argmax(1)] = True
            self.category.add(ids, enc.category, present, boxes=enc.boxes, probs=enc.probs, metadata=rows)
        return ids

    def add_codes(self, codes: CodesFile, keep_ids: bool = False) -> np.ndarray:
        """Add a codes file's codes with their paths and labels; returns the ids they got.

        By default they get fresh ids after the index's largest (ids numbered from 0 in each encoded folder would
        otherwise collide); ``keep_ids`` keeps the file's ids, which must then be new to the index."""
        if codes.bits != self.bits:
            raise IncompatibleError(f"the codes file holds {codes.bits}-bit codes but the index holds {self.bits}-bit codes")
        if self.category is not None:
            raise InvalidInputError("an IAH index takes images (their category codes come from the model), not a codes file")
        if self.keeps_features:
            raise InvalidInputError("this index keeps a feature vector per image, which a codes file lacks: add the "
                                    "images instead")
        with self._lock:
            return self.semantic.add(codes.codes, ids=codes.ids if keep_ids else None, metadata=codes.metadata_rows())

    def remove(self, ids) -> int:
        """Remove images by id (all must exist) from every part of the index."""
        ids = _id_list(ids)
        with self._lock:
            self.semantic.get_codes(ids)  # every id must exist before anything changes
            if self.category is not None:  # category codes first: they always belong to indexed images
                self.category.remove(ids)
            return self.semantic.remove(ids)

    # ---- search ---------------------------------------------------------------------------------------

    def search(self, images=None, codes=None, ids=None, k: int = 10, radius: int | None = None,
               mode: str = "semantic", threshold: float = 0.5, max_categories: int = 3,
               names: list[str] | None = None, rerank: int | None = None) -> list[QueryResult]:
        """One ``QueryResult`` per query. Queries are images (paths or arrays), packed codes or a codes file (semantic mode), or
        ids of indexed images. ``k`` nearest (at most ``len(self)`` results, whatever k), or with ``radius``
        every image within that Hamming distance (inclusive; a radius above the code length finds them all).
        ``mode="category"`` (IAH) searches, per query, the categories it most likely shows (probability >
        ``threshold``, at most ``max_categories``, the best one at least) among images holding that category,
        equal category distances ordered by whole-image (semantic) distance.

        ``rerank=f`` (semantic mode, an index that keeps features, queries by image or id): a two-stage search
        that takes the ``k * f`` nearest by Hamming distance and returns the k of them most similar to the
        query by cosine similarity of their feature vectors (``SearchResult.score``); with ``radius`` it
        orders everything within the radius by that similarity."""
        if sum(x is not None for x in (images, codes, ids)) != 1:
            raise InvalidInputError("give exactly one kind of query: images, codes or ids")
        self.check_search("images" if images is not None else "codes" if codes is not None else "ids", k, radius,
                          mode, rerank)
        k = min(int(k), max(len(self.semantic), 1))  # never more results than images: bounded memory for any k
        if mode == "category":
            return self._search_category(images, ids, k, threshold, max_categories, names)
        semantic = self.semantic  # one state throughout, even if refresh() swaps in a newer one meanwhile
        qfeats = None
        if images is not None:
            images = list(images)
            qcodes, qfeats = self._encode_queries(images, rerank is not None)
            qnames = [str(im) if isinstance(im, (str, Path)) else f"image {n}" for n, im in enumerate(images)]
        elif isinstance(codes, CodesFile):
            if codes.bits != self.bits:
                raise IncompatibleError(f"query codes have {codes.bits} bits but the database has {self.bits}")
            qcodes = codes.codes
            qnames = [codes.paths[n] if codes.paths else f"id {int(i)}" for n, i in enumerate(codes.ids)]
        elif codes is not None:
            qcodes = np.asarray(codes)
            if qcodes.ndim == 1:
                qcodes = qcodes[None]
            qnames = [f"code {n}" for n in range(len(qcodes))]
        else:
            ids = _id_list(ids)
            qcodes = semantic.get_codes(ids)
            qfeats = semantic.get_features(ids) if rerank is not None else None
            qnames = [f"id {i}" for i in ids]
        if names is not None:
            qnames = list(names)
        if radius is not None:
            lims, D, I = semantic.range_search(qcodes, radius)
            rows = [(D[lims[n]:lims[n + 1]], I[lims[n]:lims[n + 1]]) for n in range(len(qcodes))]
        else:
            depth = k if rerank is None else min(k * int(rerank), len(semantic))
            D, I = semantic.search(qcodes, max(depth, 1))
            rows = [(d[i >= 0], i[i >= 0]) for d, i in zip(D, I)]
        if rerank is None:
            metadata = iter(semantic.get_metadata(np.concatenate([i for _, i in rows]) if rows else []))
            return [QueryResult(qn, _to_results(d, i, [next(metadata) for _ in range(len(i))]))
                    for qn, (d, i) in zip(qnames, rows)]
        out = []
        for qn, qf, (d, i) in zip(qnames, qfeats, rows):
            order, score = self._rerank(semantic, qf, i)
            if radius is None:
                order = order[:k]
            results = _to_results(d[order], i[order], semantic.get_metadata(i[order]))
            for r, s in zip(results, score[order]):
                r.score = round(float(s), 6)
            out.append(QueryResult(qn, results))
        return out

    def _encode_queries(self, images: list, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Query images' codes (and features): through the model's recorded ONNX graph when it has one and is
        not loaded yet (``query_graph``: the same bits without importing torch, so a one-shot search starts in
        about a second), else through the model."""
        graph = self._query_graph(images)
        if graph is not None:
            return graph.encode(images, features)
        enc = self.encode(images, features=features)
        return enc.codes, enc.features

    def _query_graph(self, images: list):
        if (self._encoder is not None or self._graph is False or self.category is not None or not self.checkpoint
                or not all(isinstance(im, (str, Path)) for im in images)):
            return None
        with self._lock:
            if self._graph is None:
                from .query_graph import QueryGraph

                ckpt = self._checkpoint_path()
                graph = QueryGraph.find(ckpt)
                if graph is not None and graph.bits != self.bits:
                    raise IncompatibleError(f"checkpoint {ckpt} makes {graph.bits}-bit codes but the index holds "
                                            f"{self.bits}-bit codes")
                self._graph = graph or False
        return self._graph or None

    def check_search(self, query: str, k=10, radius=None, mode: str = "semantic", rerank=None,
                     max_k: int | None = None, max_rerank: int | None = None) -> None:
        """Refuse (``InvalidInputError``) search settings this index cannot answer for a ``query`` of kind
        "images", "codes" or "ids"; ``search`` runs it, and a server runs it before queueing a request, with
        its own ``max_k`` / ``max_rerank``."""
        check_search_args(query, k, radius, mode, rerank, keeps_features=self.keeps_features,
                          has_category=self.category is not None, max_k=max_k, max_rerank=max_rerank)

    def _rerank(self, semantic, query: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order of ``found`` by decreasing cosine similarity to ``query``, equal ones in Hamming order; the
        similarities). An image removed since the Hamming search ranks last."""
        feats = semantic.find_features(found)
        q = np.asarray(query, np.float32)
        sim = feats @ q / (np.linalg.norm(feats, axis=1) * np.linalg.norm(q) + 1e-12)
        sim = np.where(np.isnan(sim), -np.inf, sim)
        return np.argsort(-sim, kind="stable"), sim

    def _search_category(self, images, ids, k, threshold, max_categories, names) -> list[QueryResult]:
        if images is not None:
            images = list(images)
            enc = self.encode(images)
            semantic, category, probs, boxes = enc.codes, enc.category, enc.probs, enc.boxes
            qnames = [str(im) if isinstance(im, (str, Path)) else f"image {n}" for n, im in enumerate(images)]
        else:  # check_search refused codes
            ids = _id_list(ids)
            semantic, category, probs, boxes = self._stored_category_codes(ids)
            qnames = [f"id {i}" for i in ids]
        qnames = list(names) if names is not None else qnames
        pairs = [(n, c) for n in range(len(qnames))
                 for c in CategoryIndex.choose_categories(probs[n], threshold, max_categories)]
        queries = np.stack([category[n, c] for n, c in pairs])

        def by_semantic(row, found):  # equal category distances: the more similar whole image first
            n = pairs[row][0]
            codes, held = self.semantic.find_codes(found)  # an image a writer is removing right now ranks last
            out = np.full(len(found), self.semantic.bits + 1, np.int64)
            out[held] = hamming_distances(semantic[n:n + 1], codes)[0]
            return out

        D, I, meta = self.category.search(queries, np.array([c for _, c in pairs]), k, tiebreak=by_semantic)
        out = [QueryResult(qn, [], "category") for qn in qnames]
        for row, (n, c) in enumerate(pairs):
            box = None if boxes is None else [round(float(v), 5) for v in boxes[n, c]]
            out[n].categories.append(CategoryQuery(c, self.category.class_names[c], round(float(probs[n, c]), 5), box))
            found = I[row] >= 0
            out[n].results += _to_results(D[row][found], I[row][found], meta[row])
        return out

    def _stored_category_codes(self, ids: list[int]):
        """An indexed image's own category codes, probabilities and boxes, as stored (categories it was not
        indexed under get probability 0)."""
        c, nbytes = len(self.category.class_names), self.semantic.nbytes
        category = np.zeros((len(ids), c, nbytes), np.uint8)
        probs = np.zeros((len(ids), c), np.float64)
        boxes = np.zeros((len(ids), c, 4), np.float32)
        semantic = self.semantic.get_codes(ids)
        for cat, sub in self.category.subs.items():
            held = np.isin(ids, sub.ids)
            if held.any():
                rows = np.flatnonzero(held)
                found = [ids[r] for r in rows]
                category[rows, cat] = sub.get_codes(found)
                for r, md in zip(rows, sub.get_metadata(found)):
                    probs[r, cat] = (md or {}).get("prob", 1.0)
                    boxes[r, cat] = (md or {}).get("box", [0, 0, 1, 1])
        return semantic, category, probs, boxes

    # ---- persistence ----------------------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path:
        """Write the index folder under its writer lock (one lock for the whole folder): each part atomically,
        the semantic index (whose manifest names the model and marks the folder as an index) first, then the
        category codes. Saving back to the folder this index was opened from refuses if another writer saved
        there since it was opened (see ``update``)."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise InvalidInputError("no folder to save the index to")
        legacy = self._legacy and path == self.path
        if not legacy:
            check_target(path)  # before the lock file is created there
        with self._lock, index_lock(path):
            self.semantic.save(path / "semantic" if legacy else path)
            if self.category is not None:
                self.category.save(path / CATEGORY_DIR)
            self.path = path
        return path

    @contextlib.contextmanager
    def update(self, timeout: float | None = None):
        """``with index.update(): index.add(...)``: take the folder's writer lock, reload the index if another
        writer saved since it was opened (the model stays loaded), run the block, and save when it ends
        without an error. Writers in other processes or threads wait (up to ``timeout`` seconds, then
        IndexLockedError), so no update is lost. For a long-lived process such as a service."""
        if self.path is None:
            raise InvalidInputError("this index has no folder: save it once before updating it")
        with self._lock, index_lock(self.path, timeout):
            self._reload_if_changed()
            yield self
            self.save()

    def refresh(self) -> bool:
        """Catch up with changes another writer (another process, ``deephash index add``, ``deephash up``)
        saved to this index's folder since it was opened: reopen its parts, keeping the loaded model. Cheap when
        nothing changed (one small file read), so a long-lived reader can call it every second. Returns whether
        anything was reloaded."""
        if self.path is None:
            return False
        with self._lock:
            return self._reload_if_changed(mmap=True)

    def _reload_if_changed(self, mmap: bool = False) -> bool:
        semantic_dir = self.path / "semantic" if self._legacy else self.path
        loaded = (self.semantic._manifest or {}).get("version")
        if loaded is not None and read_manifest(semantic_dir).get("version", 0) == loaded:
            return False
        fresh = open_index(self.path, mmap=mmap)
        self.semantic, self.category = fresh.semantic, fresh.category
        return True

    def info(self) -> dict:
        out = {**self.semantic.info(), "method": self.method}
        if self.category is not None:
            out["category_codes"] = len(self.category)
        return out


def open_index(path: str | Path, checkpoint: str | Path | None = None, mmap: bool = True) -> ImageIndex:
    """Open an index folder (DSH or IAH); ``checkpoint`` overrides the model the index records."""
    path = Path(path)
    if (path / LEGACY_IAH_MANIFEST).is_file():
        try:
            manifest = json.loads((path / LEGACY_IAH_MANIFEST).read_text())
        except ValueError as e:
            raise CorruptFileError(f"{path / LEGACY_IAH_MANIFEST} is corrupt: {e}") from None
        semantic = HammingIndex.load(path / "semantic", mmap=mmap)
        index = ImageIndex(semantic, CategoryIndex.load(path / CATEGORY_DIR), path,
                           checkpoint or manifest.get("checkpoint"), manifest.get("threshold", 0.5))
        index._legacy = True
        return index
    semantic = HammingIndex.load(path, mmap=mmap)
    category = CategoryIndex.load(path / CATEGORY_DIR, mmap=mmap) if CategoryIndex.is_category_index(path / CATEGORY_DIR) else None
    return ImageIndex(semantic, category, path, checkpoint)


@contextlib.contextmanager
def update_index(path: str | Path, timeout: float | None = None, checkpoint: str | Path | None = None):
    """``with update_index(path) as index:`` open an index folder for a change and save it after the block,
    all under the folder's writer lock: concurrent writers (other processes too) run one after the other and
    none of their changes is lost; a writer that waits longer than ``timeout`` seconds gets IndexLockedError."""
    path = Path(path)
    if not (path / MANIFEST).is_file() and not (path / LEGACY_IAH_MANIFEST).is_file():
        open_index(path)  # the error of a folder that holds no index, before the lock creates anything there
    with index_lock(path, timeout):
        index = open_index(path, checkpoint=checkpoint, mmap=False)
        with index.update(timeout):
            yield index


def _id_list(ids) -> list[int]:
    a = np.atleast_1d(np.asarray(ids))
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise InvalidInputError(f"ids must be integers, got {ids!r}")
    return [int(i) for i in a]


def _to_results(distances, ids, metadata) -> list[SearchResult]:
    out = []
    for d, i, md in zip(distances, ids, metadata):
        md = dict(md or {})
        out.append(SearchResult(int(i), int(d), md.pop("path", None), md.pop("labels", []), md.pop("category", None),
                                md.pop("prob", None), md.pop("box", None), md))
    return out


def _dataset_row(dataset, i: int) -> dict:
    row = {"labels": [n for n, v in zip(dataset.class_names, dataset.labels[i]) if v]}
    if dataset.paths is not None:
        row["path"] = dataset.paths[i]
    return row
