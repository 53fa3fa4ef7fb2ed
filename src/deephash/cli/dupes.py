"""``deephash dupes``: near-duplicate groups of an index (``retrieval.dupes``), printed, as JSON or as a sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import INDEX_ARG_HELP, INDEX_OPT_HELP, app, index_folder


@app.command()
def dupes(
    index_arg: Optional[Path] = typer.Argument(None, metavar="INDEX", help=INDEX_ARG_HELP, show_default=False),
    index_opt: Optional[Path] = typer.Option(None, "--index", help=INDEX_OPT_HELP),
    radius: int = typer.Option(..., "--radius", "-r", help="Images whose codes differ in at most this many bits "
                                                          "are near-duplicates (groups chain through members)."),
    sheet: Optional[Path] = typer.Option(None, help="Write a PNG contact sheet of the largest groups."),
    max_groups: int = typer.Option(12, help="Groups on the contact sheet."),
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON."),
) -> None:
    """Groups of near-duplicate images, largest first.

    Example:

    \b
        deephash dupes ~/Pictures/.deephash --radius 2 --sheet dupes.png
    """
    from ..retrieval import open_index
    from ..retrieval.dupes import contact_sheet, find_duplicates
    from ..utils.io import display_path

    index = open_index(index_folder(index_arg, index_opt, "deephash dupes IDX"))
    groups = find_duplicates(index, radius)
    if as_json:
        typer.echo(json.dumps({"radius": radius, "images": len(index), "groups": [g.to_dict() for g in groups]},
                              indent=2))
    else:
        for n, g in enumerate(groups, 1):
            typer.echo(f"group {n}: {len(g.ids)} images")
            for i, p, d in zip(g.ids, g.paths, g.distances):
                typer.echo(f"  d={d:<3} id {i:<8} {display_path(p) if p else ''}")
        in_groups = sum(len(g.ids) for g in groups)
        typer.echo(f"{len(groups)} groups, {in_groups} of {len(index)} images within radius {radius}")
    if sheet is not None and groups:
        contact_sheet(groups, sheet, max_groups)
        typer.echo(f"wrote {display_path(sheet)}", err=as_json)
