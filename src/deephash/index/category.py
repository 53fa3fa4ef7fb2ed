"""Category-aware index (IAH): one code per (image, category), searched within a category.

A thin layer over ``HammingIndex``: one sub-index per category whose ids are image ids, so a search
for category c can only return images that hold a code for c. Each entry's metadata keeps the image's
own metadata (path, labels) plus the box of the proposal that produced the code and the class
probability. Searches are batch first, like FAISS: each query names its category. Saved as a folder:
``category.json`` plus one HammingIndex folder per non-empty category.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidInputError, MissingFileError
from ..utils.io import atomic_write
from .engines import engine_class
from .engines.base import check_codes, check_k, empty_knn
from .hamming_index import HammingIndex
from .storage import index_lock

MANIFEST = "category.json"
FORMAT = "deephash-category-index/1"


class CategoryIndex:
    def __init__(self, bits: int, class_names: list[str], engine: str = "auto", engine_settings: dict | None = None):
        if not class_names:
            raise InvalidInputError("a category index needs the class names")
        self.bits, self.class_names, self.engine = bits, list(class_names), engine
        self.engine_settings = dict(engine_settings or {})  # each category's index gets its part of them
        self.nbytes = HammingIndex(bits).nbytes
        self.subs: dict[int, HammingIndex] = {}
        self.checkpoint: str | None = None
        self.threshold = 0.5  # the probability above which images were indexed under a category (persisted)

    def __len__(self) -> int:
        return sum(len(s) for s in self.subs.values())

    def add(self, image_ids, category_codes, present, boxes=None, probs=None, metadata=None) -> int:
        """Add each image's code for every category marked in ``present`` (N, C) (e.g. predicted probability >
        threshold, or the ground-truth labels). ``category_codes`` (N, C, bits/8) packed; ``boxes`` (N, C, 4) the
        producing proposal per category; ``metadata`` one dict per image. Returns the number of entries added."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        codes = np.asarray(category_codes)
        present = np.asarray(present, dtype=bool)
        n, c = len(image_ids), len(self.class_names)
        if codes.shape != (n, c, self.nbytes) or codes.dtype != np.uint8:
            raise InvalidInputError(f"category codes must be uint8 ({n}, {c}, {self.nbytes}), got {codes.dtype} "
                                f"{codes.shape}")
        if present.shape != (n, c):
            raise InvalidInputError(f"present must be ({n}, {c}), got {present.shape}")
        if boxes is not None and np.shape(boxes) != (n, c, 4):
            raise InvalidInputError(f"boxes must be ({n}, {c}, 4), got {np.shape(boxes)}")
        if metadata is not None and len(metadata) != n:
            raise InvalidInputError(f"{len(metadata)} metadata entries for {n} images")
        added = 0
        for k in np.flatnonzero(present.any(0)):
            rows = np.flatnonzero(present[:, k])
            meta = []
            for i in rows:
                m = dict(metadata[i] or {}) if metadata is not None else {}
                m["category"] = self.class_names[k]
                if boxes is not None:
                    m["box"] = [round(float(v), 5) for v in boxes[i, k]]
                if probs is not None:
                    m["prob"] = round(float(probs[i, k]), 5)
                meta.append(m)
            if int(k) not in self.subs:
                self.subs[int(k)] = self._new_sub(int(k))
            sub = self.subs[int(k)]
            sub.add(codes[rows, k], ids=image_ids[rows], metadata=meta)
            added += len(rows)
        return added

    def _new_sub(self, c: int) -> HammingIndex:
        settings = None
        if self.engine_settings:
            target = "mih" if self.engine == "auto" else self.engine
            settings = engine_class(target).part_settings(self.engine_settings, f"c{c:04d}")
        return HammingIndex(self.bits, engine=self.engine, engine_settings=settings)

    def search(self, queries, categories, k: int = 10, tiebreak=None) -> tuple[np.ndarray, np.ndarray, list[list]]:
        """Batch search, FAISS-like: query i (packed, (nq, bits/8); one 1-D code is a batch of one) is
        searched among the images holding a code for ``categories[i]`` (one int: the same for all).

        Returns (distances int32 (nq, k), image ids int64 (nq, k)) sorted by distance, -1 where a category
        holds fewer than k images, and per query the metadata of its found ids. Trained from image labels
        only, the codes of one category often coincide (nothing in the labels tells one dog from another),
        so many images tie at the k-th distance. ``tiebreak(i, ids) -> distances`` orders query i's equal
        category distances by a second distance (e.g. of the images' semantic codes) instead of by
        insertion order; the category distance still comes first."""
        q = np.asarray(queries)
        q = check_codes(q[None] if q.ndim == 1 else q, self.nbytes, "queries")
        nq = len(q)
        cats = np.asarray(categories)
        if cats.ndim == 0:
            cats = np.full(nq, cats)
        if cats.shape != (nq,) or (nq and not np.issubdtype(cats.dtype, np.integer)):
            raise InvalidInputError(f"categories must be one integer or {nq} integers, got {cats.dtype} {cats.shape}")
        bad = cats[(cats < 0) | (cats >= len(self.class_names))]
        if len(bad):
            raise InvalidInputError(f"category {int(bad[0])} out of range for {len(self.class_names)} classes")
        D, I = empty_knn(nq, check_k(k))
        meta: list[list] = [[] for _ in range(nq)]
        for c in np.unique(cats):
            sub = self.subs.get(int(c))
            if sub is None:
                continue
            rows = np.flatnonzero(cats == c)
            d, ids = sub.search(q[rows], k)
            if tiebreak is not None:
                _reorder_ties(sub, q[rows], rows, d, ids, tiebreak)
            D[rows], I[rows] = d, ids
            for r, found in zip(rows, ids):
                meta[r] = sub.get_metadata(found[found >= 0])
        return D, I, meta

    def query(self, category_codes, probs, k: int = 10, threshold: float = 0.5, max_categories: int = 3,
              tiebreak=None) -> list[dict]:
        """A query image's codes (C, bits/8) and class probabilities (C,) → results grouped by its predicted
        categories (probability > threshold, best first, at most ``max_categories``; the single best when none
        passes), each with only the found results; ``tiebreak(ids) -> distances`` as in ``search``."""
        probs = np.asarray(probs, dtype=np.float64)
        order = self.choose_categories(probs, threshold, max_categories)
        per_row = None if tiebreak is None else (lambda i, ids: tiebreak(ids))
        D, I, meta = self.search(np.asarray(category_codes)[order], order, k, per_row)
        groups = []
        for j, c in enumerate(order):
            found = I[j] >= 0
            groups.append({"category": c, "class": self.class_names[c], "prob": float(probs[c]),
                           "distances": D[j][found], "ids": I[j][found], "metadata": meta[j]})
        return groups

    def remove(self, image_ids) -> int:
        """Remove every code of these images (ids an image holds no code for are ignored); a category left
        empty is dropped. Returns the number of codes removed."""
        image_ids = np.asarray(image_ids, np.int64)
        removed = 0
        for c, sub in list(self.subs.items()):
            held = np.intersect1d(image_ids, sub.ids)
            if len(held):
                removed += sub.remove(held)
            if len(sub) == 0:
                del self.subs[c]
        return removed

    @staticmethod
    def choose_categories(probs, threshold: float = 0.5, max_categories: int = 3) -> list[int]:
        """The categories a query image is searched in: probability > threshold, best first, at most
        ``max_categories``; the single most probable when none passes."""
        probs = np.asarray(probs, dtype=np.float64)
        order = [int(c) for c in np.argsort(-probs, kind="stable") if probs[c] > threshold][:max_categories]
        return order or [int(np.argmax(probs))]

    def save(self, path) -> Path:
        """Write the folder under its writer lock: each category's HammingIndex, then ``category.json``."""
        path = Path(path)
        with index_lock(path):
            for c, sub in self.subs.items():
                sub.save(path / f"c{c:04d}")
            manifest = {"format": FORMAT, "bits": self.bits, "class_names": self.class_names,
                        "engine": self.engine, "engine_settings": self.engine_settings,
                        "categories": sorted(self.subs), "checkpoint": self.checkpoint,
                        "threshold": self.threshold}
            atomic_write(path / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
        return path

    @classmethod
    def load(cls, path, mmap: bool = True) -> "CategoryIndex":
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            raise MissingFileError(f"{path} is not a category index (no {MANIFEST}; build one with deephash iah-encode)")
        try:
            m = json.loads(mf.read_bytes())
            if not isinstance(m, dict) or m.get("format", FORMAT) != FORMAT:
                raise ValueError(f"unknown format {m.get('format') if isinstance(m, dict) else m!r:.100}")
            names, categories = m["class_names"], m["categories"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"class_names must be a list of strings, got {names!r:.200}")
            if (not isinstance(categories, list) or not all(type(c) is int for c in categories)
                    or not all(0 <= c < len(names) for c in categories)):
                raise ValueError(f"categories must be class numbers below {len(names)}, got {categories!r:.200}")
            if not isinstance(m.get("engine", "auto"), str) or not isinstance(m.get("checkpoint"), (str, type(None))):
                raise ValueError("engine must be a name and checkpoint a path")
            threshold = m.get("threshold", 0.5)
            if type(threshold) not in (int, float) or not 0 <= threshold <= 1:
                raise ValueError(f"threshold must be a probability, got {threshold!r:.100}")
            if not isinstance(m.get("engine_settings", {}), dict):
                raise ValueError(f"engine_settings must be an object, got {m['engine_settings']!r:.100}")
            idx = cls(m["bits"], names, m.get("engine", "auto"), m.get("engine_settings"))
        except (ValueError, KeyError, TypeError, RecursionError, InvalidInputError) as e:
            raise CorruptFileError(f"{mf} is corrupt: {e}") from None
        except OSError as e:
            raise CorruptFileError(f"{mf} cannot be read: {e.strerror or e}") from None
        idx.checkpoint = m.get("checkpoint")
        idx.threshold = float(threshold)
        for c in categories:
            sub = HammingIndex.load(path / f"c{c:04d}", mmap=mmap)
            if sub.bits != idx.bits:
                raise CorruptFileError(f"{path / f'c{c:04d}'} holds {sub.bits}-bit codes but {mf} says {idx.bits}")
            idx.subs[c] = sub
        return idx

    @staticmethod
    def is_category_index(path) -> bool:
        return (Path(path) / MANIFEST).is_file()


def _reorder_ties(sub: HammingIndex, q: np.ndarray, rows: np.ndarray, D: np.ndarray, I: np.ndarray, tiebreak) -> None:
    """Reorder each row of (D, I) in place: every image as close as the row's k-th, by (distance, tiebreak)."""
    kth = np.where(I >= 0, D, -1).max(axis=1)
    if kth.max() < 0:
        return  # nothing found for any row
    lims, rd, rids = sub.range_search(q, int(kth.max()))  # one radius for the batch, filtered per row
    for j, row in enumerate(rows):
        d, ids = rd[lims[j]:lims[j + 1]], rids[lims[j]:lims[j + 1]]
        d, ids = d[d <= kth[j]], ids[d <= kth[j]]
        order = np.lexsort((np.asarray(tiebreak(int(row), ids)), d))[:(I[j] >= 0).sum()]
        D[j], I[j] = -1, -1  # a writer between the two searches may have left fewer codes
        D[j, :len(order)], I[j, :len(order)] = d[order], ids[order]
