"""Scoring two codes files (queries, database): what ``deephash evaluate`` runs."""

from __future__ import annotations

from pathlib import Path

from ..errors import IncompatibleError, InvalidInputError

MODES = ("semantic", "category", "all")


def _load_labelled(path: Path, what: str):
    from ..codes import CodesFile

    cf = CodesFile.load(path)
    if cf.labels is None:
        raise InvalidInputError(f"{path} has no labels; evaluation needs labelled {what} codes")
    return cf


def _modes(mode: str | None, files: dict) -> tuple[bool, bool]:
    """(score semantic codes, score category codes); by default category codes are scored when both files
    hold them."""
    if mode is None:
        return True, all(cf.has_categories for cf in files.values())
    if mode not in MODES:
        raise InvalidInputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "semantic":
        for path, cf in files.items():
            if not cf.has_categories:
                raise InvalidInputError(f"{path} holds no category codes; --mode {mode} needs IAH codes files "
                                        "(CodesFile.from_iah)")
    return mode != "category", mode != "semantic"


def evaluate_codes_files(query: str | Path, database: str | Path, mode: str | None = None, topk=(1000,),
                         radius: int = 2, ndcg_k=(100,), empty: str = "exclude", semantic_ties: bool = False,
                         protocol: str | None = None) -> dict:
    """Scores of labelled query codes against labelled database codes: ``{"semantic": ..., "category": ...}``
    (``mode`` semantic, category or all; by default category codes are scored too when both files hold them).
    ``semantic_ties`` orders equal category distances by semantic distance."""
    from .category import CATEGORY_PROTOCOL, evaluate_category
    from .suite import evaluate as run_evaluation

    q = _load_labelled(query, "query")
    db = _load_labelled(database, "database")
    if q.class_names and db.class_names and q.class_names != db.class_names:
        raise IncompatibleError(f"{query} and {database} use different class names; labels are not comparable")
    if q.bits != db.bits:
        raise IncompatibleError(f"{query} holds {q.bits}-bit codes but {database} holds {db.bits}-bit codes")
    semantic, category = _modes(mode, {query: q, database: db})
    if semantic_ties and not category:
        raise InvalidInputError("--semantic-ties orders category rankings, but no category codes are scored")
    protocol = protocol or q.meta.get("protocol")
    opts = dict(bits=q.bits, topk=tuple(topk), radius=radius, ndcg_k=tuple(ndcg_k), empty=empty)
    results = {}
    if semantic:
        results["semantic"] = run_evaluation(q.codes, db.codes, q.labels, db.labels, protocol=protocol, **opts)
    if category:
        ties = dict(query_semantic=q.codes, db_semantic=db.codes) if semantic_ties else {}
        results["category"] = evaluate_category(
            q.category_codes, db.category_codes, q.labels, db.labels, **opts, **ties,
            protocol=f"{protocol} {CATEGORY_PROTOCOL}" if protocol else CATEGORY_PROTOCOL)
    return results
