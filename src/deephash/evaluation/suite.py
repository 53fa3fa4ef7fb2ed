"""Public entry points: validate, run the kernels chunk by chunk, average under stated rules.

Every number carries the rules that produced it, because the same codes give different
"mAP" under different tie-breaking, empty-query and top-K conventions.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeephashError
from .metrics import Histograms, Sorted, ap_deterministic, ap_tie_aware
from .ranking import check_inputs, iter_chunks
from .ties import harmonic

TIE_RULES = {
    "deterministic": "stable ranking: items at equal Hamming distance are ordered by database position "
    "(row order of the database codes), lower first",
    "tie_aware": "exact expected value over all orderings of items at equal Hamming distance "
    "(closed form, McSherry & Najork 2008)",
}
EMPTY_RULES = {
    "exclude": "queries with no relevant item in the database are left out of every mean",
    "zero": "queries with no relevant item in the database count as 0 in every mean",
}
RELEVANCE_RULE = (
    "relevant = shares at least one label (label dot product > 0); graded gain = number of shared labels"
)
AP_RULE = (
    "AP@K = sum of precision@i over relevant items in the top K / number of relevant items in the top K "
    "(DeepHash/DPSH convention), 0 if the top K holds none; mAP = AP over the whole database"
)


def check_empty(empty: str) -> str:
    if empty not in EMPTY_RULES:
        raise DeephashError(f"empty must be one of {sorted(EMPTY_RULES)}, got {empty!r}")
    return empty


def effective_k(k, n_database: int, what: str = "topk") -> int:
    """K values are clipped to the database size: the top K cannot hold more than all of it."""
    if k is None:
        return n_database
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DeephashError(f"{what} values must be positive integers, got {k!r}")
    return int(min(k, n_database))


class MeanOverQueries:
    """Accumulate per-query values chunk by chunk and average them under the empty-query rule."""

    def __init__(self, empty: str):
        self.empty = empty
        self.sums: dict = {}
        self.n_evaluated = 0
        self.n_without_relevant = 0

    def mask(self, n_relevant: np.ndarray) -> np.ndarray:
        has = n_relevant > 0
        self.n_evaluated += int(has.sum()) if self.empty == "exclude" else len(has)
        self.n_without_relevant += int((~has).sum())
        return has if self.empty == "exclude" else np.ones_like(has)

    def add(self, key, values: np.ndarray, mask: np.ndarray) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + np.asarray(values, dtype=np.float64)[mask].sum(axis=0)

    def mean(self, key):
        if self.n_evaluated == 0:
            raise DeephashError(
                "no query has a relevant item in the database, so nothing can be evaluated "
                "(use empty='zero' to score such queries as 0)"
            )
        value = self.sums[key] / self.n_evaluated
        return value.tolist() if np.ndim(value) else float(value)

    def counts(self) -> dict:
        return {
            "n_queries_evaluated": self.n_evaluated,
            "n_queries_without_relevant": self.n_without_relevant,
        }


def mean_average_precision(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    topk: int | None = None,
    empty: str = "exclude",
    weighted: bool = False,
    progress: bool | None = None,
) -> dict:
    """mAP (``topk=None``) or mAP@K of Hamming ranking, deterministic and tie-aware.

    Codes are packed uint8 (n, bits/8); labels multi-hot (n, classes). AP@K follows the
    DeepHash/DPSH convention (see ``AP_RULE``); ``weighted=True`` gives weighted mAP (ACG@i
    in place of P@i). Returns a JSON-serialisable dict with both values, the effective K,
    the query counts and the rules.
    """
    inputs = check_inputs(query_codes, db_codes, query_labels, db_labels)
    check_empty(empty)
    k = effective_k(topk, inputs.n_database)
    H = harmonic(inputs.n_database)
    acc = MeanOverQueries(empty)
    for chunk in iter_chunks(inputs, progress):
        h = Histograms.of(chunk, inputs.bits)
        mask = acc.mask(h.n_relevant)
        acc.add("deterministic", ap_deterministic(Sorted.of(chunk), [k], weighted)[k], mask)
        acc.add("tie_aware", ap_tie_aware(h, H, [k], weighted)[k], mask)
    return {
        "metric": ("wAP" if weighted else "AP") + ("" if topk is None else f"@{k}"),
        "deterministic": acc.mean("deterministic"),
        "tie_aware": acc.mean("tie_aware"),
        "k": None if topk is None else k,
        **acc.counts(),
        "rules": {"ties": TIE_RULES, "empty": EMPTY_RULES[empty], "ap": AP_RULE, "relevance": RELEVANCE_RULE},
    }
