"""Named, seeded split protocols → (train, query, database) index lists.

Every protocol works on a *pool*: the source's splits concatenated in the order
train, test (or the single split "all"), with ``boundary`` = the number of pool items
that came from the source's train split. Numbers reported anywhere carry the
protocol name and the three sizes (``Split.describe``).

- ``dsh``       DSH paper, CIFAR-10: train = the train split (50k), query = the test
                split (10k), database = train.
- ``cifar10-2`` the same sets under the name used by later papers.
- ``cifar10``   1k query (100/class) + 5k train (500/class) drawn from the pool; database =
                the remaining 54k (train excluded).
- ``cifar10-1`` 1k query (100/class); database = the other 59k; train = 5k (500/class)
                drawn from the database.
- ``per-class`` for multi-label lists (NUS-WIDE-21 style): ``query_per_class`` and
                ``train_per_class`` images sampled per class without replacement (classes
                visited in order, an image taken once); database = the rest.
- ``holdout``   a random ``query_fraction`` of the pool is the query set; train = database
                = the rest (the default for single-split sources such as digits).
- ``given``     the source already has train / test (query) / database splits (list-file
                folders): used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IncompatibleError, InvalidInputError
from .base import ArrayDataset, FileDataset, HashDataset

PROTOCOLS = ("dsh", "cifar10", "cifar10-1", "cifar10-2", "per-class", "holdout", "given")


SPLIT_PARTS = ("train", "query", "database")


@dataclass
class Split:
    protocol: str
    train: HashDataset
    query: HashDataset
    database: HashDataset
    seed: int

    def describe(self) -> str:
        return (f"protocol {self.protocol} (seed {self.seed}): train {len(self.train)}, "
                f"query {len(self.query)}, database {len(self.database)}")

    def sizes(self) -> dict:
        return {"protocol": self.protocol, "seed": self.seed, "train": len(self.train),
                "query": len(self.query), "database": len(self.database)}

    def part(self, name: str) -> HashDataset:
        """The ``train``, ``query`` or ``database`` set."""
        if name not in SPLIT_PARTS:
            raise InvalidInputError(f"split must be one of {', '.join(SPLIT_PARTS)}, got {name!r}")
        return getattr(self, name)


def concat(datasets: list[HashDataset], name: str) -> HashDataset:
    if len(datasets) == 1:
        return datasets[0]
    names = datasets[0].class_names
    if any(d.class_names != names for d in datasets):
        raise IncompatibleError(f"{name}: splits have different class lists")
    labels = np.concatenate([d.labels for d in datasets])
    if all(isinstance(d, ArrayDataset) for d in datasets):
        shapes = {d.images.shape[1:] for d in datasets}
        if len(shapes) > 1:
            raise InvalidInputError(f"{name}: splits have different image sizes {shapes}")
        paths = None
        if all(d.paths is not None for d in datasets):
            paths = [p for d in datasets for p in d.paths]
        return ArrayDataset(np.concatenate([d.images for d in datasets]), labels, names, paths, name)
    if all(isinstance(d, FileDataset) for d in datasets):
        return FileDataset([p for d in datasets for p in d.paths], labels, names, datasets[0].image_size, name)
    raise InvalidInputError(f"{name}: cannot combine in-memory and on-disk splits")


def _per_class(labels: np.ndarray, per_class: int, available: np.ndarray, rng) -> np.ndarray:
    """Sample ``per_class`` items of each class (in class order) from ``available`` without reuse."""
    free = np.zeros(len(labels), dtype=bool)
    free[available] = True
    chosen = []
    for c in range(labels.shape[1]):
        cand = np.flatnonzero(free & (labels[:, c] > 0))
        if len(cand) < per_class:
            raise InvalidInputError(f"class {c} has only {len(cand)} images left, {per_class} needed")
        pick = rng.choice(cand, per_class, replace=False)
        free[pick] = False
        chosen.append(pick)
    return np.sort(np.concatenate(chosen))


def split_indices(protocol: str, labels: np.ndarray, boundary: int, seed: int = 0, *,
                  query_per_class: int = 100, train_per_class: int = 500,
                  query_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index lists (train, query, database) into the pool for a named protocol."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    everything = np.arange(n)
    if protocol in ("dsh", "cifar10-2"):
        if boundary <= 0 or boundary >= n:
            raise InvalidInputError(f"protocol {protocol!r} needs a source with separate train and test splits")
        train = everything[:boundary]
        return train, everything[boundary:], train
    if protocol in ("cifar10", "per-class"):  # same rule; the names follow the literature
        query = _per_class(labels, query_per_class, everything, rng)
        rest = np.setdiff1d(everything, query)
        train = _per_class(labels, train_per_class, rest, rng)
        return train, query, np.setdiff1d(rest, train)
    if protocol == "cifar10-1":
        query = _per_class(labels, query_per_class, everything, rng)
        database = np.setdiff1d(everything, query)
        return _per_class(labels, train_per_class, database, rng), query, database
    if protocol == "holdout":
        if not 0 < query_fraction < 1:
            raise InvalidInputError(f"query fraction must be in (0, 1), got {query_fraction}")
        perm = rng.permutation(n)
        nq = max(1, int(round(n * query_fraction)))
        query, rest = np.sort(perm[:nq]), np.sort(perm[nq:])
        return rest, query, rest
    raise InvalidInputError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


SPLIT_ALIASES = {"query": "test", "db": "database"}
KNOWN_SPLITS = ("train", "test", "val", "database", "all")


def make_split(splits: dict[str, HashDataset], protocol: str | None = None, seed: int = 0, **kw) -> Split:
    """Apply a protocol to a source's splits. ``protocol=None`` picks the natural one.

    Split names ``query`` and ``db`` are read as ``test`` and ``database``. A split the
    protocol cannot place is an error, never silently dropped.
    """
    splits = {SPLIT_ALIASES.get(k, k): v for k, v in splits.items()}
    unknown = sorted(set(splits) - set(KNOWN_SPLITS))
    if unknown:
        raise InvalidInputError(f"unknown split names {unknown}; expected some of {', '.join(KNOWN_SPLITS)}")
    names = set(splits)
    if protocol is None:
        if {"train", "test"} <= names:
            protocol = "given" if "database" in names else "dsh"
        elif names == {"all"}:
            protocol = "holdout"
        else:
            raise InvalidInputError(f"no default protocol for splits {sorted(names)}; name one with --protocol")
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol in ("given", "dsh", "cifar10-2"):
        if not {"train", "test"} <= names:
            raise InvalidInputError(f"protocol {protocol!r} needs train and test splits, the source has {sorted(names)}")
        if protocol != "given" and "database" in names:
            raise InvalidInputError(f"the source defines its own database split: use protocol 'given', not {protocol!r}")
        database = splits.get("database", splits["train"])
        return Split(protocol, splits["train"], splits["test"], database, seed)
    if "database" in names:
        raise InvalidInputError(f"protocol {protocol!r} draws its own database; this source defines one: use 'given'")
    order = [s for s in ("train", "test", "val", "all") if s in splits]
    parts = [splits[s] for s in order]
    pool = concat(parts, parts[0].name.rsplit("-", 1)[0])
    boundary = len(splits["train"]) if "train" in splits else 0
    train, query, database = split_indices(protocol, pool.labels, boundary, seed, **kw)
    return Split(protocol, pool.subset(train), pool.subset(query), pool.subset(database), seed)
