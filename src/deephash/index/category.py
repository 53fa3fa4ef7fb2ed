"""Category-aware index (IAH): one code per (image, category), searched within a category.

A thin layer over ``HammingIndex``: one sub-index per category whose ids are image ids, so a search
for category c can only return images that hold a code for c. Each entry's metadata keeps the image's
own metadata (path, labels) plus the box of the proposal that produced the code and the class
probability. Saved as a folder: ``category.json`` plus one HammingIndex folder per non-empty category.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DeephashError
from ..utils.io import atomic_write
from .hamming_index import HammingIndex

MANIFEST = "category.json"


class CategoryIndex:
    def __init__(self, bits: int, class_names: list[str], engine: str = "auto"):
        if not class_names:
            raise DeephashError("a category index needs the class names")
        self.bits, self.class_names, self.engine = bits, list(class_names), engine
        self.nbytes = HammingIndex(bits).nbytes
        self.subs: dict[int, HammingIndex] = {}
        self.checkpoint: str | None = None

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
            raise DeephashError(f"category codes must be uint8 ({n}, {c}, {self.nbytes}), got {codes.dtype} "
                                f"{codes.shape}")
        if present.shape != (n, c):
            raise DeephashError(f"present must be ({n}, {c}), got {present.shape}")
        if boxes is not None and np.shape(boxes) != (n, c, 4):
            raise DeephashError(f"boxes must be ({n}, {c}, 4), got {np.shape(boxes)}")
        if metadata is not None and len(metadata) != n:
            raise DeephashError(f"{len(metadata)} metadata entries for {n} images")
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
            sub = self.subs.setdefault(int(k), HammingIndex(self.bits, engine=self.engine))
            sub.add(codes[rows, k], ids=image_ids[rows], metadata=meta)
            added += len(rows)
        return added

    def search(self, query_code, category: int, k: int = 10, tiebreak=None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """The k nearest images holding a code for ``category``: (distances, image ids, metadata).

        Trained from image labels only, the codes of one category often coincide (nothing in the labels
        tells one dog from another), so many images tie at the k-th distance. ``tiebreak(ids) -> distances``
        orders equal category distances by a second distance (e.g. of the images' semantic codes) instead
        of by insertion order; the category distance still comes first."""
        if not 0 <= int(category) < len(self.class_names):
            raise DeephashError(f"category {category} out of range for {len(self.class_names)} classes")
        sub = self.subs.get(int(category))
        if sub is None:
            return np.empty(0, np.int32), np.empty(0, np.int64), []
        q = np.asarray(query_code, np.uint8).reshape(1, -1)
        D, I = sub.search(q, k)
        keep = I[0] >= 0
        d, ids = D[0][keep], I[0][keep]
        if tiebreak is not None and len(ids):
            _, d, ids = sub.range_search(q, int(d.max()))  # every image as close as the k-th
            order = np.lexsort((np.asarray(tiebreak(ids)), d))[:k]
            d, ids = d[order], ids[order]
        return d, ids, sub.get_metadata(ids)

    def query(self, category_codes, probs, k: int = 10, threshold: float = 0.5, max_categories: int = 3,
              tiebreak=None) -> list[dict]:
        """A query image's codes (C, bits/8) and class probabilities (C,) → results grouped by its predicted
        categories (probability > threshold, best first, at most ``max_categories``; the single best when none
        passes); ``tiebreak`` as in ``search``."""
        probs = np.asarray(probs, dtype=np.float64)
        order = [int(c) for c in np.argsort(-probs, kind="stable") if probs[c] > threshold][:max_categories]
        if not order:
            order = [int(np.argmax(probs))]
        groups = []
        for c in order:
            d, ids, meta = self.search(category_codes[c], c, k, tiebreak)
            groups.append({"category": c, "class": self.class_names[c], "prob": float(probs[c]),
                           "distances": d, "ids": ids, "metadata": meta})
        return groups

    def save(self, path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for c, sub in self.subs.items():
            sub.save(path / f"c{c:04d}")
        manifest = {"format": "deephash-category-index/1", "bits": self.bits, "class_names": self.class_names,
                    "engine": self.engine, "categories": sorted(self.subs), "checkpoint": self.checkpoint}
        atomic_write(path / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
        return path

    @classmethod
    def load(cls, path) -> "CategoryIndex":
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise DeephashError(f"{path} is not a category index (no {MANIFEST}; build one with deephash iah-encode)")
        m = json.loads((path / MANIFEST).read_text())
        idx = cls(int(m["bits"]), m["class_names"], m.get("engine", "auto"))
        idx.checkpoint = m.get("checkpoint")
        for c in m["categories"]:
            idx.subs[int(c)] = HammingIndex.load(path / f"c{int(c):04d}")
        return idx

    @staticmethod
    def is_category_index(path) -> bool:
        return (Path(path) / MANIFEST).is_file()
