"""PNG plots of evaluation results, drawn on bare ``Figure`` objects (Agg, no pyplot state).

The caller (``report.write_report``) names each result's curve (``labels``), so this module imports nothing
of ``report``, which imports it lazily (matplotlib only when a report is written)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..utils.io import atomic_write


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


def pr_curve(results: list[dict], path: Path, labels: list[str]) -> Path:
    """Precision vs recall as the Hamming radius grows 0..bits (a set metric: no tie rule)."""
    fig = Figure(figsize=(4.5, 3.6))
    ax = fig.add_subplot()
    for r, name in zip(results, labels):
        c = r["curves"]["pr_radius"]
        ax.plot(c["recall"], c["precision"], marker=".", label=name)
    ax.set(xlabel="recall", ylabel="precision", title="PR over Hamming radius", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def precision_at_k(results: list[dict], path: Path, labels: list[str]) -> Path:
    """P@K against K: tie-aware solid, deterministic (stable order) dashed."""
    fig = Figure(figsize=(4.5, 3.6))
    ax = fig.add_subplot()
    for r, name in zip(results, labels):
        c = r["curves"]["precision_at_k"]
        (line,) = ax.plot(c["k"], c["tie_aware"], label=f"{name} tie-aware")
        ax.plot(c["k"], c["deterministic"], linestyle="--", color=line.get_color(), label=f"{name} stable")
    ax.set(xlabel="K (top returned)", ylabel="precision@K", title="Precision@K", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def precision_radius_vs_bits(results: list[dict], path: Path) -> Path:
    """Precision within the evaluated Hamming radius for each code length (DSH-style plot)."""
    by_bits = sorted(results, key=lambda r: r["bits"])
    fig = Figure(figsize=(4.5, 3.6))
    ax = fig.add_subplot()
    xs = [r["bits"] for r in by_bits]
    ys = [r["metrics"][f"P@H<={r['radius']['r']}"]["tie_aware"] for r in by_bits]
    radii = sorted({r["radius"]["r"] for r in by_bits})
    ax.plot(xs, ys, marker="o")
    ax.set(
        xlabel="code length (bits)",
        ylabel=f"precision within radius {', '.join(map(str, radii))}",
        title="Precision within Hamming radius",
        xticks=xs,
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    return _save(fig, path)
