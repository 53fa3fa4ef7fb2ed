from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import IncompatibleError, InvalidInputError
from ._app import app

MODES = ("semantic", "category", "all")


def _load_labelled(path: Path, what: str):
    from ..codes import CodesFile

    cf = CodesFile.load(path)
    if cf.labels is None:
        raise InvalidInputError(f"{path} has no labels; evaluation needs labelled {what} codes")
    return cf


def _modes(mode: Optional[str], files: dict) -> tuple[bool, bool]:
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


@app.command()
def evaluate(
    query: Path = typer.Option(..., "--query", help="Codes file (.npz) of the queries, with labels."),
    database: Path = typer.Option(..., "--database", help="Codes file (.npz) of the database, with labels."),
    topk: List[int] = typer.Option([1000], "--topk", help="K for mAP@K, wAP@K and P@K; repeat for several."),
    radius: int = typer.Option(2, help="Hamming radius for precision/recall within radius."),
    ndcg_k: List[int] = typer.Option([100], "--ndcg-k", help="K for NDCG@K and ACG@K; repeat for several."),
    empty: str = typer.Option("exclude", help="Queries with no relevant item: 'exclude' them or count them as 'zero'."),
    mode: Optional[str] = typer.Option(
        None, help="semantic (whole-image codes), category (IAH category codes, per (query, category) pair) or "
                   "all. Default: all when both files hold category codes, else semantic."),
    semantic_ties: bool = typer.Option(
        False, "--semantic-ties", help="Category scoring: order equal category distances by semantic distance, "
                                       "as `deephash search --mode category` does (one ranking per pair: slower)."),
    protocol: Optional[str] = typer.Option(None, help="Protocol name to record (default: from the query file)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json, plots and report.md."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON instead of the table "
                                                       "({'semantic': ..., 'category': ...} when both are scored)."),
) -> None:
    """Score Hamming ranking of queries against a database: mAP, P@K, NDCG, ... stable and tie-aware."""
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import evaluate_category, format_table, write_report
    from ..evaluation.category import CATEGORY_PROTOCOL

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
    report = write_report(list(results.values()), out) if out is not None else None
    if as_json:
        typer.echo(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=2))
    else:
        typer.echo(format_table(list(results.values())))
    if report is not None:
        typer.echo(f"wrote report to {report.parent}", err=as_json)
