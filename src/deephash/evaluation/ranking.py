"""Per-query ranking data in Hamming space: validated inputs, relevance, histograms, stable order.

Hamming distances are integers 0..bits, so a query's ranking is fully described by, for
each distance value, how many database items sit there and how much relevance they carry.
Tie-aware metrics only need these histograms; deterministic metrics need the actual order,
which is the stable sort by distance (ties broken by database position, lower first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..codes import hamming_distances
from ..errors import IncompatibleError, InvalidInputError
from ..utils.progress import tqdm

# Queries per chunk are chosen so a chunk's (queries x database) arrays hold about this many
# elements: a few tens of MB per float64 array, whatever the database size.
CHUNK_ELEMENTS = 1 << 22
# ... and at most this many queries, which bounds the (queries x distance values) arrays.
CHUNK_QUERIES = 4096
# Show a progress bar when the whole job has more (query, database) pairs than this.
PROGRESS_PAIRS = 50_000_000


@dataclass(frozen=True)
class Inputs:
    """Validated evaluation inputs: packed codes and multi-hot labels."""

    query_codes: np.ndarray
    db_codes: np.ndarray
    query_labels: np.ndarray
    db_labels: np.ndarray
    bits: int

    @property
    def n_queries(self) -> int:
        return len(self.query_codes)

    @property
    def n_database(self) -> int:
        return len(self.db_codes)


def _as_labels(labels, n: int, what: str) -> np.ndarray:
    if labels is None:
        raise InvalidInputError(f"{what} labels are missing; evaluation needs labels for queries and database")
    labels = np.asarray(labels)
    if labels.ndim == 1:
        raise InvalidInputError(
            f"{what} labels must be a 2-D multi-hot (n, classes) array, got a 1-D array; "
            "convert class indices with np.eye(num_classes)[labels]"
        )
    if labels.ndim != 2:
        raise InvalidInputError(f"{what} labels must be a 2-D multi-hot (n, classes) array, got shape {labels.shape}")
    if len(labels) != n:
        raise InvalidInputError(f"{len(labels)} {what} label rows for {n} {what} codes")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise InvalidInputError(f"{what} labels must be multi-hot: every entry 0 or 1")
    return labels.astype(np.float32)


def _as_codes(codes, what: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise InvalidInputError(f"{what} codes must be a 2-D (n, bits/8) array of packed uint8, got shape {codes.shape}")
    if codes.dtype != np.uint8:
        raise InvalidInputError(f"{what} codes must be packed uint8 (see deephash.codes.pack_bits), got {codes.dtype}")
    if len(codes) == 0:
        raise InvalidInputError(f"the {what} set is empty")
    return np.ascontiguousarray(codes)


def check_inputs(query_codes, db_codes, query_labels, db_labels, bits: int | None = None) -> Inputs:
    """Validate at the public boundary so everything inside can trust shapes and types."""
    qc = _as_codes(query_codes, "query")
    dc = _as_codes(db_codes, "database")
    if qc.shape[1] != dc.shape[1]:
        raise IncompatibleError(
            f"code widths differ: queries have {qc.shape[1] * 8} bits, database has {dc.shape[1] * 8} bits"
        )
    width = qc.shape[1] * 8
    if bits is not None:
        if not width - 8 < int(bits) <= width:
            raise InvalidInputError(f"bits={bits} but the packed codes hold {width} bits")
        width = int(bits)  # shorter codes are zero-padded to whole bytes; padding adds no distance
    ql = _as_labels(query_labels, len(qc), "query")
    dl = _as_labels(db_labels, len(dc), "database")
    if ql.shape[1] != dl.shape[1]:
        raise IncompatibleError(f"label widths differ: queries have {ql.shape[1]} classes, database {dl.shape[1]}")
    return Inputs(qc, dc, ql, dl, width)


@dataclass
class Chunk:
    """One block of queries against the whole database.

    ``dist`` is (c, ndb) Hamming distances and ``gain`` (c, ndb) the number of shared labels,
    both in the smallest unsigned type: the stable sort of small integers is a radix sort,
    and small gains make the joint (distance, gain) histogram one cheap ``bincount``.
    """

    index: slice
    dist: np.ndarray
    gain: np.ndarray
    bits: int
    levels: int

    @property
    def relevant(self) -> np.ndarray:
        return self.gain > 0

    def joint_histogram(self) -> np.ndarray:
        """(c, bits+1, levels) counts of database items per distance and gain value.

        One small-integer code per item and a bincount per row: far cheaper than building
        64-bit keys for a single flat bincount.
        """
        bins = (self.bits + 1) * self.levels
        code = self.dist.astype(np.uint16 if bins <= 1 << 16 else np.uint32)
        code *= self.levels
        code += self.gain
        counts = np.stack([np.bincount(row, minlength=bins) for row in code])
        return counts.reshape(len(code), self.bits + 1, self.levels)


def _smallest_uint(max_value: int):
    return np.uint8 if max_value < 256 else np.uint16


def iter_chunks(inputs: Inputs, progress: bool | None = None) -> Iterator[Chunk]:
    """Yield query chunks; memory stays bounded by ``CHUNK_ELEMENTS`` whatever the sizes."""
    nq, ndb = inputs.n_queries, inputs.n_database
    levels = int(min(inputs.query_labels.sum(1).max(), inputs.db_labels.sum(1).max())) + 1
    per_query = max(ndb, (inputs.bits + 1) * levels)
    step = max(1, min(CHUNK_QUERIES, CHUNK_ELEMENTS // per_query))
    if progress is None:
        progress = nq * ndb > PROGRESS_PAIRS
    dist_type, gain_type = _smallest_uint(inputs.bits), _smallest_uint(levels - 1)
    db_labels_t = np.ascontiguousarray(inputs.db_labels.T)
    starts = range(0, nq, step)
    for s in tqdm(starts, desc="evaluate", unit="chunk", disable=not progress):
        sl = slice(s, min(s + step, nq))
        dist = hamming_distances(inputs.query_codes[sl], inputs.db_codes).astype(dist_type)
        gain = (inputs.query_labels[sl] @ db_labels_t).astype(gain_type)
        yield Chunk(sl, dist, gain, inputs.bits, levels)


def stable_order(dist: np.ndarray) -> np.ndarray:
    """The deterministic ranking: by distance, ties by database position (lower first)."""
    return np.argsort(dist, axis=1, kind="stable")
