from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DeephashError
from ._app import app


def _load_labelled(path: Path, what: str):
    from ..codes import CodesFile

    cf = CodesFile.load(path)
    if cf.labels is None:
        raise DeephashError(f"{path} has no labels; evaluation needs labelled {what} codes")
    return cf


@app.command()
def evaluate(
    query: Path = typer.Option(..., "--query", help="Codes file (.npz) of the queries, with labels."),
    database: Path = typer.Option(..., "--database", help="Codes file (.npz) of the database, with labels."),
    topk: List[int] = typer.Option([1000], "--topk", help="K for mAP@K, wAP@K and P@K; repeat for several."),
    radius: int = typer.Option(2, help="Hamming radius for precision/recall within radius."),
    ndcg_k: List[int] = typer.Option([100], "--ndcg-k", help="K for NDCG@K and ACG@K; repeat for several."),
    empty: str = typer.Option("exclude", help="Queries with no relevant item: 'exclude' them or count them as 'zero'."),
    protocol: Optional[str] = typer.Option(None, help="Protocol name to record (default: from the query file)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json, plots and report.md."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON instead of the table."),
) -> None:
    """Score Hamming ranking of queries against a database: mAP, P@K, NDCG, ... stable and tie-aware."""
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import format_table, write_report

    q = _load_labelled(query, "query")
    db = _load_labelled(database, "database")
    if q.class_names and db.class_names and q.class_names != db.class_names:
        raise DeephashError(f"{query} and {database} use different class names; labels are not comparable")
    if q.bits != db.bits:
        raise DeephashError(f"{query} holds {q.bits}-bit codes but {database} holds {db.bits}-bit codes")
    result = run_evaluation(
        q.codes,
        db.codes,
        q.labels,
        db.labels,
        bits=q.bits,
        topk=tuple(topk),
        radius=radius,
        ndcg_k=tuple(ndcg_k),
        empty=empty,
        protocol=protocol or q.meta.get("protocol"),
    )
    report = write_report([result], out) if out is not None else None
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))
    if report is not None:
        typer.echo(f"wrote report to {report.parent}", err=as_json)
