"""``deephash evaluate``: parse, call ``deephash.evaluation.evaluate_codes_files``, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ._app import app


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
    """Score Hamming ranking of queries against a database: mAP, P@K, NDCG, ... stable and tie-aware.

    Example:

    \b
        deephash evaluate --query q.npz --database db.npz --out report/
    """
    from ..evaluation import evaluate_codes_files, format_table, write_report
    from ..evaluation.report import check_report_dir

    if out is not None:
        check_report_dir(out)
    results = evaluate_codes_files(query, database, mode, topk, radius, ndcg_k, empty, semantic_ties, protocol)
    report = write_report(list(results.values()), out) if out is not None else None
    if as_json:
        typer.echo(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=2))
    else:
        typer.echo(format_table(list(results.values())))
    if report is not None:
        typer.echo(f"wrote report to {report.parent}", err=as_json)
