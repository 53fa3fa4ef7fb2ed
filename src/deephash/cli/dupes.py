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
    radius: Optional[int] = typer.Option(None, "--radius", "-r", help="Images whose codes differ in at most this "
                                         "many bits are near-duplicates (groups chain through members). Default: "
                                         "1/16 of the code length, lowered until at most 5% of the images have "
                                         "their nearest neighbour that close; the reason is printed."),
    sheet: Optional[Path] = typer.Option(None, help="Write a PNG contact sheet of the largest groups."),
    max_groups: int = typer.Option(12, help="Groups on the contact sheet."),
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON."),
) -> None:
    """Groups of near-duplicate images, largest first; the sheet shows each group's first member (keep?) and
    the others with their distance to it.

    Example:

    \b
        deephash dupes ~/Pictures/.deephash --sheet dupes.png
    """
    from ..retrieval import open_index
    from ..retrieval.dupes import chaining_warning, contact_sheet, default_radius, find_duplicates
    from ..utils.io import display_path

    index = open_index(index_folder(index_arg, index_opt, "deephash dupes IDX"))
    reason = None
    if radius is None:
        choice = default_radius(index)
        radius, reason = choice.radius, choice.reason
    groups = find_duplicates(index, radius)
    warning = chaining_warning(groups, len(index), radius)
    if warning and reason is None:  # a given radius: suggest the one these codes' distances give
        warning = chaining_warning(groups, len(index), radius, default_radius(index).radius)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps({"radius": radius, "radius_reason": reason, "images": len(index), "warning": warning,
                               "groups": [g.to_dict() for g in groups]}, indent=2))
    else:
        if reason is not None:
            typer.echo(f"radius {radius} (default; --radius to choose): {reason}")
        for n, g in enumerate(groups, 1):
            typer.echo(f"group {n}: {len(g.ids)} images")
            for i, p, d in zip(g.ids, g.paths, g.distances):
                typer.echo(f"  d={d:<3} id {i:<8} {display_path(p) if p else ''}")
        in_groups = sum(len(g.ids) for g in groups)
        typer.echo(f"{len(groups)} groups, {in_groups} of {len(index)} images within radius {radius}")
    if sheet is not None and groups:
        contact_sheet(groups, sheet, max_groups)
        typer.echo(f"wrote {display_path(sheet)}", err=as_json)
