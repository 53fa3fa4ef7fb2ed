"""``deephash demo``: parse, call ``deephash.demos.dsh_demo``, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command()
def demo(
    data: str = typer.Option("digits", help="'digits' (embedded, no files) or any dataset path train accepts."),
    bits: str = typer.Option("12,24,32,48", help="Comma-separated code lengths."),
    epochs: Optional[int] = typer.Option(None, help="Default: 20 on digits, 3 elsewhere."),
    protocol: Optional[str] = typer.Option(None, help="Default: holdout on digits, dsh on CIFAR-10."),
    model: str = typer.Option("dsh"),
    topk: int = typer.Option(1000, help="K of mAP@K (clipped to the database size)."),
    out: Path = typer.Option(Path("runs/demo"), help="Folder for checkpoints, results.json and the grid PNG."),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The main job: train DSH, encode, evaluate at several code lengths, print a table, draw a grid.

    Example:

    \b
        deephash demo --bits 12,32 --out runs/demo
    """
    from ..demos import dsh_demo, parse_bits

    report = dsh_demo(data, parse_bits(bits), epochs, protocol, model, topk, out, seed, progress=not quiet,
                      log=typer.echo if not quiet else (lambda s: None))
    typer.echo("")
    for line in report.table(data):
        typer.echo(line)
    typer.echo(f"wrote {report.results_json} and the {report.grid_bits}-bit result grid {report.grid}")
