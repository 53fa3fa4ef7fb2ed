"""Per-(query, category) scoring of category-aware codes (IAH): one ranking per category a query contains.

Category-aware hashing gives every image one code per category, so "find images with a dog like the dog
in this query" ranks the database by the distance between the query's dog code and each image's dog
code. Whole-image metrics cannot score that; this module runs ``evaluate`` once per category (or once
per (query, category) pair with a semantic tie-break) and averages over the pairs.
"""

from __future__ import annotations

import numpy as np

from ..codes import hamming_distances
from ..errors import InvalidInputError
from .ranking import check_inputs
from .suite import EMPTY_RULES, TIE_RULES, check_empty, evaluate

CATEGORY_PROTOCOL = "per (query, category)"
CATEGORY_RULE = (
    "one ranking per (query q, category c in q's labels): the database ranked by the Hamming distance between "
    "q's code for c and each image's code for c; relevant = the image contains c; graded gain = labels shared "
    "with q when the image contains c, else 0; means are over all (q, c) pairs (pairs whose category no "
    "database image contains are the queries without relevant items)"
)
SEMANTIC_TIES_RULES = {
    "deterministic": "stable ranking: items at equal category distance are ordered by semantic-code distance, "
    "then by database position",
    "tie_aware": TIE_RULES["tie_aware"],
}


def _category_codes(codes, what: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 3 or codes.dtype != np.uint8:
        raise InvalidInputError(f"{what} category codes must be a packed uint8 (n, categories, bits/8) array, "
                            f"got {codes.dtype} {codes.shape}")
    return codes


def evaluate_category(
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
    query_semantic=None,
    db_semantic=None,
    protocol: str | None = None,
    progress: bool | None = None,
) -> dict:
    """``evaluate``'s metrics on the per-(query, category) protocol of the IAH paper, averaged over pairs.

    ``query_codes`` (nq, C, bits/8) and ``db_codes`` (ndb, C, bits/8) hold one packed code per image and
    category; labels are multi-hot (n, C). For every category c and every query q whose labels contain c,
    the database is ranked by the distance between q's code for c and every image's code for c. An image
    is relevant when it contains c; its graded gain (wAP, NDCG, ACG) is the number of labels it shares with
    q, and 0 when it does not contain c. Each metric is the mean over all such (q, c) pairs, deterministic
    (ties by database position) and tie-aware (exact mean over orderings of equal distances), exactly as
    ``evaluate`` computes it for one ranking. A pair whose category no database image contains has no
    relevant item: left out (``empty="exclude"``) or scored 0 (``"zero"``).

    With ``query_semantic`` / ``db_semantic`` (packed whole-image codes), equal category distances are
    ordered by semantic distance in the deterministic values (what ``deephash search --mode category``
    does); the tie-aware values are unchanged. Returns a dict shaped like ``evaluate``'s (so
    ``format_table`` and ``write_report`` accept it) where "queries" count (q, c) pairs, plus
    ``pairs_per_category``.
    """
    qc, dc = _category_codes(query_codes, "query"), _category_codes(db_codes, "database")
    n_cat = qc.shape[1]
    if dc.shape[1:] != qc.shape[1:]:
        raise InvalidInputError(f"query category codes {qc.shape[1:]} and database category codes {dc.shape[1:]} "
                            "differ in categories or width")
    first = check_inputs(qc[:, 0], dc[:, 0], query_labels, db_labels, bits)
    ql, dl = first.query_labels, first.db_labels
    if ql.shape[1] != n_cat:
        raise InvalidInputError(f"labels have {ql.shape[1]} classes but the codes have {n_cat} categories")
    tiebreak = query_semantic is not None or db_semantic is not None
    if tiebreak:
        sem = check_inputs(query_semantic, db_semantic, ql, dl)
        query_semantic, db_semantic = sem.query_codes, sem.db_codes
    check_empty(empty)
    opts = dict(bits=bits, topk=topk, radius=radius, ndcg_k=ndcg_k, curve_k=curve_k, progress=progress)

    parts, pairs, missing = [], [], 0
    for c in range(n_cat):
        qi = np.flatnonzero(ql[:, c])
        pairs.append(len(qi))
        gated = dl * dl[:, c:c + 1]
        if len(qi) == 0 or gated.sum() == 0:
            missing += len(qi)
            continue
        if not tiebreak:
            parts.append((len(qi), evaluate(qc[qi, c], dc[:, c], ql[qi], gated, **opts)))
            continue
        for i in qi:
            perm = np.argsort(hamming_distances(query_semantic[i:i + 1], db_semantic)[0], kind="stable")
            parts.append((1, evaluate(qc[i:i + 1, c], dc[perm, c], ql[i:i + 1], gated[perm], **opts)))
    if not parts:
        raise InvalidInputError("no (query, category) pair has a database image of its category, so nothing can be "
                            "evaluated")
    return _combine(parts, missing, empty, tiebreak, pairs, protocol, len(qc), len(dc))


def _combine(parts, missing, empty, tiebreak, pairs, protocol, nq, ndb) -> dict:
    """Weighted mean of per-category results (weight = pairs scored); pairs without relevant items add
    to the denominator as zeros under ``empty="zero"``."""
    n = sum(w for w, _ in parts) + (missing if empty == "zero" else 0)

    def mean(get):
        total = 0.0
        for w, r in parts:
            total = total + np.asarray(get(r), dtype=np.float64) * w
        value = total / n
        return value.tolist() if np.ndim(value) else float(value)

    base = parts[0][1]
    metrics = {name: {kind: mean(lambda r, name=name, kind=kind: r["metrics"][name][kind])
                      for kind in ("deterministic", "tie_aware")} for name in base["metrics"]}
    pk, pr = base["curves"]["precision_at_k"], base["curves"]["pr_radius"]
    rules = dict(base["rules"], empty=EMPTY_RULES[empty].replace("queries", "(query, category) pairs"),
                 relevance=CATEGORY_RULE, ties=SEMANTIC_TIES_RULES if tiebreak else TIE_RULES)
    notes = []
    for _, r in parts:
        notes += [x for x in r["notes"] if x not in notes]
    return {
        "protocol": protocol or CATEGORY_PROTOCOL,
        "bits": base["bits"],
        "n_queries": sum(pairs),
        "n_database": ndb,
        "n_query_images": nq,
        "n_queries_evaluated": n,
        "n_queries_without_relevant": missing,
        "empty": empty,
        "multi_label": True,
        "pairs_per_category": pairs,
        "semantic_ties": tiebreak,
        "metrics": metrics,
        "radius": {"r": base["radius"]["r"],
                   "n_queries_nothing_retrieved": sum(r["radius"]["n_queries_nothing_retrieved"] for _, r in parts)},
        "curves": {
            "precision_at_k": {"k": pk["k"], **{kind: mean(lambda r, kind=kind: r["curves"]["precision_at_k"][kind])
                                               for kind in ("deterministic", "tie_aware")}},
            "pr_radius": {"radius": pr["radius"],
                          **{kind: mean(lambda r, kind=kind: r["curves"]["pr_radius"][kind])
                             for kind in ("precision", "recall")}},
        },
        "rules": rules,
        "notes": notes,
    }
