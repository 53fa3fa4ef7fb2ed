"""Public entry points: validate, run the kernels chunk by chunk, average under stated rules.

Every number carries the rules that produced it, because the same codes give different
"mAP" under different tie-breaking, empty-query and top-K conventions.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .metrics import (
    Histograms,
    Sorted,
    acg_at_k,
    ap_deterministic,
    ap_tie_aware,
    discount_prefix,
    ndcg_at_k,
    precision_at_k,
    radius_precision_recall,
)
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
        raise InvalidInputError(f"empty must be one of {sorted(EMPTY_RULES)}, got {empty!r}")
    return empty


def effective_k(k, n_database: int, what: str = "topk") -> int:
    """K values are clipped to the database size: the top K cannot hold more than all of it."""
    if k is None:
        return n_database
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"{what} values must be positive integers, got {k!r}")
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
            raise InvalidInputError(
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

    Codes are packed uint8 (n, bits/8); labels multi-hot (n, classes); an item is relevant
    to a query when they share a label. With rel_i the relevance at rank i,

        AP@K = sum_{i <= K, rel_i} P@i / #{i <= K : rel_i}    (0 if no relevant item in the top K)

    the convention of public deep hashing code (DeepHash, DPSH): the denominator counts the
    relevant items *retrieved in the top K*. mAP is AP@ndb. ``weighted=True`` gives weighted
    mAP (ACG@i = mean number of shared labels of the top i, in place of P@i). "deterministic"
    ranks ties by database position; "tie_aware" is the exact mean over all orderings of
    ties. Queries with no relevant item are excluded (``empty="exclude"``) or scored 0
    (``"zero"``). K above the database size is clipped to it. Returns a JSON-serialisable
    dict with both values, the effective K, the query counts and the rules.
    """
    inputs = check_inputs(query_codes, db_codes, query_labels, db_labels)
    check_empty(empty)
    k = effective_k(topk, inputs.n_database)
    H = harmonic(inputs.n_database)
    acc = MeanOverQueries(empty)
    for chunk in iter_chunks(inputs, progress):
        h = Histograms.of(chunk)
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


RADIUS_RULE = (
    "P and R within Hamming radius r are set metrics over items at distance <= r, identical under any "
    "tie order; a query that retrieves nothing within the radius has precision 0"
)
GRADED_RULE = (
    "wAP@K: AP@K with ACG@i in place of precision@i; ACG@K = mean gain of the top K; "
    "NDCG@K = sum (2^gain - 1) / log2(i + 1) over the top K, divided by the same for the ideal order"
)
DEFAULT_CURVE_K = (1, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)


def _ks(values, n_database: int, what: str, notes: list) -> list[int]:
    ks = []
    for k in values:
        eff = effective_k(k, n_database, what)
        if eff != k:
            notes.append(f"{what} {k} exceeds the database size {n_database}; evaluated at K={eff}")
        if eff not in ks:
            ks.append(eff)
    return ks


def evaluate(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    bits: int | None = None,
    topk=(1000,),
    radius: int = 2,
    ndcg_k=(100,),
    curve_k=None,
    empty: str = "exclude",
    protocol: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Every ranking metric of Hamming search, each deterministic and tie-aware, in one pass.

    Codes are packed uint8 (n, bits/8); labels multi-hot (n, classes), single- or multi-label.
    ``topk`` sets mAP@K, wAP@K and P@K; ``ndcg_k`` sets NDCG@K and ACG@K; ``curve_k`` the
    precision@K curve; ``radius`` the Hamming ball for P/R within radius (the PR curve covers
    every radius 0..bits). ``protocol`` is recorded as given (e.g. "cifar10-1"). Returns a
    JSON-serialisable dict: ``metrics`` maps names to {"deterministic", "tie_aware"},
    ``curves`` holds the P@K and radius PR curves, ``rules`` states how every number was made.
    """
    inputs = check_inputs(query_codes, db_codes, query_labels, db_labels, bits)
    check_empty(empty)
    bits, ndb = inputs.bits, inputs.n_database
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 0 <= radius <= bits:
        raise InvalidInputError(f"radius must be an integer between 0 and {bits}, got {radius!r}")
    notes: list[str] = []
    topk = _ks(topk, ndb, "topk", notes)
    ndcg_k = _ks(ndcg_k, ndb, "ndcg_k", notes)
    curve_k = sorted(_ks(DEFAULT_CURVE_K if curve_k is None else curve_k, ndb, "curve_k", []))
    H, D = harmonic(ndb), discount_prefix(ndb)
    ap_ks = [ndb, *(k for k in topk if k != ndb)]

    acc = MeanOverQueries(empty)
    nothing_in_radius = 0
    for chunk in iter_chunks(inputs, progress):
        h, srt = Histograms.of(chunk), Sorted.of(chunk)
        mask = acc.mask(h.n_relevant)
        for weighted, name in ((False, "mAP"), (True, "wAP")):
            det, tie = ap_deterministic(srt, ap_ks, weighted), ap_tie_aware(h, H, ap_ks, weighted)
            for k in ap_ks:
                for key in ([name] if k == ndb else []) + ([f"{name}@{k}"] if k in topk else []):
                    acc.add((key, "deterministic"), det[k], mask)
                    acc.add((key, "tie_aware"), tie[k], mask)
        for name, (det, tie) in (
            ("P", precision_at_k(h, srt, topk)),
            ("NDCG", ndcg_at_k(h, srt, ndcg_k, D)),
            ("ACG", acg_at_k(h, srt, ndcg_k)),
        ):
            for i, k in enumerate(topk if name == "P" else ndcg_k):
                acc.add((f"{name}@{k}", "deterministic"), det[:, i], mask)
                acc.add((f"{name}@{k}", "tie_aware"), tie[:, i], mask)
        det, tie = precision_at_k(h, srt, curve_k)
        acc.add(("curve_p", "deterministic"), det, mask)
        acc.add(("curve_p", "tie_aware"), tie, mask)
        precision, recall, retrieved = radius_precision_recall(h)
        acc.add("pr_precision", precision, mask)
        acc.add("pr_recall", recall, mask)
        nothing_in_radius += int((retrieved[:, radius] == 0)[mask].sum())

    metrics: dict = {}
    for key in acc.sums:
        if isinstance(key, tuple) and not key[0].startswith("curve"):
            metrics.setdefault(key[0], {})[key[1]] = acc.mean(key)
    pr_p, pr_r = acc.mean("pr_precision"), acc.mean("pr_recall")
    for name, values in ((f"P@H<={radius}", pr_p), (f"R@H<={radius}", pr_r)):
        metrics[name] = {"deterministic": values[radius], "tie_aware": values[radius]}
    return {
        "protocol": protocol,
        "bits": bits,
        "n_queries": inputs.n_queries,
        "n_database": ndb,
        **acc.counts(),
        "empty": empty,
        "multi_label": bool((inputs.query_labels.sum(1) > 1).any() or (inputs.db_labels.sum(1) > 1).any()),
        "metrics": metrics,
        "radius": {"r": radius, "n_queries_nothing_retrieved": nothing_in_radius},
        "curves": {
            "precision_at_k": {
                "k": curve_k,
                "deterministic": acc.mean(("curve_p", "deterministic")),
                "tie_aware": acc.mean(("curve_p", "tie_aware")),
            },
            "pr_radius": {"radius": list(range(bits + 1)), "precision": pr_p, "recall": pr_r},
        },
        "rules": {
            "ties": TIE_RULES,
            "empty": EMPTY_RULES[empty],
            "relevance": RELEVANCE_RULE,
            "ap": AP_RULE,
            "graded": GRADED_RULE,
            "radius": RADIUS_RULE,
        },
        "notes": notes,
    }
