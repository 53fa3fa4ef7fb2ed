"""Human-readable output of ``evaluate`` results: a text table, and a report folder.

The rules (tie-breaking, empty queries, AP@K convention) are printed with every table,
because a number without them cannot be compared with anyone else's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InvalidInputError
from ..utils.io import atomic_write


def label(result: dict) -> str:
    """Legend text for one result: code length, and the protocol when one was given."""
    return f"{result['bits']} bits" + (f" ({result['protocol']})" if result.get("protocol") else "")

def _as_list(results) -> list[dict]:
    results = [results] if isinstance(results, dict) else list(results)
    if not results:
        raise InvalidInputError("no evaluation results to report")
    return results


def _metric_names(results: list[dict]) -> list[str]:
    names: list[str] = []
    for r in results:
        names += [m for m in r["metrics"] if m not in names]
    return names


def _rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["metric"]
    for r in results:
        header += [f"{label(r)} stable", f"{label(r)} tie-aware"]
    rows = []
    for name in _metric_names(results):
        row = [name]
        for r in results:
            m = r["metrics"].get(name)
            row += ["" if m is None else f"{m['deterministic']:.4f}", "" if m is None else f"{m['tie_aware']:.4f}"]
        rows.append(row)
    return header, rows


def _footer(results: list[dict]) -> list[str]:
    first = results[0]["rules"]
    lines = [
        f"ties: stable = {first['ties']['deterministic']}; tie-aware = {first['ties']['tie_aware']}",
        f"AP: {first['ap']}",
        f"graded: {first['graded']}",
        f"radius: {first['radius']}",
    ]
    for r in results:
        unit = "(query, category) pairs" if "pairs_per_category" in r else "queries"
        if unit != "queries":
            lines.append(f"{label(r)}: {r['rules']['relevance']}")
        if r["rules"]["ties"] != first["ties"]:
            lines.append(f"{label(r)}: ties: stable = {r['rules']['ties']['deterministic']}")
        lines.append(
            f"{label(r)}: {r['n_queries']} {unit}, {r['n_database']} database items; "
            f"{r['n_queries_without_relevant']} {unit} have no relevant item ({r['rules']['empty']}); "
            f"{r['radius']['n_queries_nothing_retrieved']} of the {r['n_queries_evaluated']} evaluated "
            f"retrieve nothing within radius {r['radius']['r']} (precision 0)"
        )
        lines += [f"{label(r)}: note: {note}" for note in r.get("notes", [])]
    return lines


def format_table(results) -> str:
    """Plain-text table of one result or several (e.g. one per code length), with the rules."""
    results = _as_list(results)
    header, rows = _rows(results)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))  # noqa: E731
    protocols = sorted({str(r["protocol"]) for r in results if r.get("protocol")})
    lines = [f"protocol: {', '.join(protocols)}"] if protocols else []
    lines += [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]
    return "\n".join(lines + _footer(results))


def _markdown_table(results: list[dict]) -> str:
    header, rows = _rows(results)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def check_report_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse a report folder that is, or lies under, an existing file (before any scoring is done)."""
    out = Path(out_dir)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InvalidInputError(f"cannot write the report into {out}: {blocker} is a file, not a folder")
    return out


def write_report(results, out_dir: str | os.PathLike) -> Path:
    """Write ``report.json``, PNG plots and ``report.md`` (table beside plots) into ``out_dir``.

    Pass several results (one per code length) to get the precision-within-radius vs bits
    plot as well. Returns the path of ``report.md``.
    """
    results = _as_list(results)
    out = check_report_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "report.json", lambda fh: fh.write(json.dumps(results, indent=2).encode()))
    from . import plots  # matplotlib: only when a report is written

    labels = [label(r) for r in results]
    images = [plots.pr_curve(results, out / "pr_curve.png", labels),
              plots.precision_at_k(results, out / "precision_at_k.png", labels)]
    if len({r["bits"] for r in results}) > 1:
        images.append(plots.precision_radius_vs_bits(results, out / "precision_radius_vs_bits.png"))
    figures = "".join(f'<img src="{p.name}" width="420"><br>' for p in images)
    md = "\n".join(
        [
            "# Hamming ranking evaluation",
            "",
            '<table><tr><td valign="top">',
            "",
            _markdown_table(results),
            "",
            f'</td><td valign="top">{figures}</td></tr></table>',
            "",
            *[f"- {line}" for line in _footer(results)],
            "",
            "Full numbers and curves: `report.json`.",
            "",
        ]
    )
    atomic_write(out / "report.md", lambda fh: fh.write(md.encode()))
    return out / "report.md"
