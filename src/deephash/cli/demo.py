from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ._app import app


def parse_bits(text: str) -> list[int]:
    from ..codes import check_code_length
    from ..errors import DeephashError

    try:
        values = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise DeephashError(f"--bits takes comma-separated integers, got {text!r}") from None
    return [check_code_length(b) for b in values]


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
    """The main job: train DSH, encode, evaluate at several code lengths, print a table, draw a grid."""
    import numpy as np

    from ..codes import hamming_distances
    from ..evaluation import evaluate
    from ..train.config import TrainConfig
    from ..train.run import codes_for, load_split
    from ..train.trainer import train as run_train
    from ..viz import result_grid

    lengths = parse_bits(bits)
    n_epochs = epochs or (20 if data == "digits" else 3)
    split = load_split(data, protocol, seed, 32, progress=not quiet)
    typer.echo(f"data {data}: {split.describe()}; {n_epochs} epochs per code length")
    out.mkdir(parents=True, exist_ok=True)
    rows, results = [], []
    codes_by_bits = {}
    for b in lengths:
        cfg = TrainConfig(data=data, protocol=split.protocol, seed=seed, model=model, bits=b, epochs=n_epochs,
                          optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="cosine", batch_size=100,
                          out=str(out / f"{b}bits"))
        t0 = time.perf_counter()
        trained = run_train(cfg, split.train, progress=not quiet)
        seconds = time.perf_counter() - t0
        meta = {"data": data, "protocol": split.protocol, "seed": seed, "image_size": 32,
                "checkpoint": str(trained.checkpoint)}
        q, _ = codes_for(trained.model, split.query, {**meta, "split": "query"}, progress=not quiet)
        db, _ = codes_for(trained.model, split.database, {**meta, "split": "database"}, progress=not quiet)
        q.save(out / f"{b}bits" / "query.npz")
        db.save(out / f"{b}bits" / "database.npz")
        codes_by_bits[b] = (q, db)
        r = evaluate(q.codes, db.codes, q.labels, db.labels, bits=b, topk=(topk,), protocol=split.protocol,
                     progress=False)
        r["train_seconds"] = round(seconds, 1)
        results.append(r)
        m = r["metrics"]
        k = f"mAP@{min(topk, len(db))}"
        rows.append((b, m["mAP"]["deterministic"], m["mAP"]["tie_aware"], m[k]["deterministic"],
                     m["P@H<=2"]["deterministic"], seconds))
        if not quiet:
            typer.echo(f"{b:>4} bits: mAP {m['mAP']['deterministic']:.4f} ({seconds:.0f} s)")
    k = min(topk, len(split.database))
    typer.echo("")
    typer.echo(f"DSH on {data} — {split.describe()}")
    typer.echo(f"{'bits':>5} {'mAP@all':>9} {'mAP@all':>9} {f'mAP@{k}':>9} {'P@H<=2':>8} {'train s':>8}")
    typer.echo(f"{'':>5} {'(stable)':>9} {'(tie-avg)':>9} {'(stable)':>9} {'':>8} {'':>8}")
    for b, m1, m2, m3, p2, s in rows:
        typer.echo(f"{b:>5} {m1:>9.4f} {m2:>9.4f} {m3:>9.4f} {p2:>8.4f} {s:>8.1f}")
    typer.echo("stable = ties at equal Hamming distance broken by database order; tie-avg = exact expectation "
               "over all tie orders; queries with no relevant item excluded "
               f"({results[0]['n_queries_without_relevant']} here); P@H<=2 counts an empty ball as 0.")
    (out / "results.json").write_text(json.dumps({"split": split.sizes(), "data": data, "results": results}, indent=2))
    grid_bits = min(lengths, key=lambda b: abs(b - 32))
    q, db = codes_by_bits[grid_bits]
    pick = np.random.default_rng(seed).choice(len(q), size=min(8, len(q)), replace=False)
    dist = hamming_distances(q.codes[pick], db.codes)
    top = np.argsort(dist, axis=1, kind="stable")[:, :10]
    relevant = (q.labels[pick] @ db.labels.T > 0)[np.arange(len(pick))[:, None], top]
    grid = result_grid([split.query.image_u8(int(i)) for i in pick],
                       [[split.database.image_u8(int(j)) for j in row] for row in top], out / "grid.png",
                       distances=np.take_along_axis(dist, top, 1), relevant=relevant,
                       row_titles=[f"query {int(i)} ({', '.join(n for n, v in zip(q.class_names, q.labels[i]) if v)})"
                                   for i in pick])
    typer.echo(f"wrote {out / 'results.json'} and the {grid_bits}-bit result grid {grid}")
