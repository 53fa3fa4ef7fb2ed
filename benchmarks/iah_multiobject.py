"""DSH vs IAH (semantic and category-aware codes) on the multi-object benchmark built from CIFAR-10.

    python benchmarks/iah_multiobject.py [--train 2000 --query 500 --canvas 48 --epochs 5 --lr 3e-3 --bits 32,48]

Data: canvases with 1-4 CIFAR-10 objects (train objects from CIFAR train, query objects from CIFAR test);
database = the training canvases (the DSH paper's protocol: database = train).

Methods (same conv stack: the DSH paper's 5×5 32/32/64 layers, same epochs, batch, optimiser, schedule):
- DSH: the existing DSH trainer on whole images; pairs similar when they share a label.
- IAH semantic: one code per image (category codes weighted by image-level probabilities).
- IAH category-aware: for each (query q, category c that q contains, ground truth), the database images are
  ranked by the Hamming distance between q's code for c and their code for c (every database image has one
  code per category). "cat. + sem. ties": the same, equal distances ordered by semantic-code distance. Relevant = the database image contains c; the graded gain (NDCG, ACG, wAP) = the number
  of labels shared with q when it contains c, else 0. Means are over all (q, c) pairs.
Metrics are the deterministic variants of ``deephash.evaluation.evaluate`` (ties in database order) and, for
the category-aware codes, of ``deephash.evaluation.evaluate_category``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deephash.data import cached_multiobject, load_source  # noqa: E402
from deephash.evaluation import evaluate, evaluate_category  # noqa: E402
from deephash.runs import encode  # noqa: E402
from deephash.train import TrainConfig  # noqa: E402
from deephash.train import train as run_train  # noqa: E402
from deephash.utils.io import atomic_write  # noqa: E402

KEYS = ("mAP", "NDCG@100", "wAP", "ACG@100")


def metrics(q, db, ql, dbl, bits) -> dict:
    m = evaluate(q, db, ql, dbl, bits=bits, topk=(1000,), ndcg_k=(100,), progress=False)["metrics"]
    return {k: m[k]["deterministic"] for k in KEYS}


def category_metrics(q_cat, db_cat, q_labels, db_labels, bits, q_sem=None, db_sem=None) -> dict:
    """Means over every (query, category it contains) of the per-category ranking (see the module doc); with
    semantic codes, equal category distances are ordered by semantic distance."""
    r = evaluate_category(q_cat, db_cat, q_labels, db_labels, bits=bits, topk=(1000,), ndcg_k=(100,),
                          query_semantic=q_sem, db_semantic=db_sem, progress=False)
    return {k: r["metrics"][k]["deterministic"] for k in KEYS} | {"pairs": r["n_queries_evaluated"]}


def per_category(q, db, query, database, bits) -> dict:
    """One code per image scored on the per-(query, category) protocol: the same code serves every category."""
    c = query.num_classes
    return category_metrics(np.repeat(q[:, None], c, 1), np.repeat(db[:, None], c, 1), query.labels,
                            database.labels, bits)


def table(title: str, rows) -> None:
    head = f"{'method':<20} {'bits':>4} {'mAP@all':>8} {'NDCG@100':>9} {'wAP':>7} {'ACG@100':>8} {'train s':>8}"
    print(f"\n{title}\n{head}\n" + "-" * len(head))
    for name, bits, m, secs in rows:
        print(f"{name:<20} {bits:>4} {m['mAP']:>8.4f} {m['NDCG@100']:>9.4f} {m['wAP']:>7.4f} {m['ACG@100']:>8.4f} "
              f"{secs:>8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg.tar.gz"))
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--query", type=int, default=500)
    ap.add_argument("--canvas", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam(W) learning rate of both methods (cosine decay)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bits", default="32,48")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/iah_benchmark")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    progress = not a.quiet
    src = load_source(a.cifar, progress=progress)
    opts = dict(canvas=a.canvas, max_objects=4, scale=(0.35, 0.6))
    train = cached_multiobject(src["train"], a.train, f"{a.cifar}:train", seed=a.seed, progress=progress,
                               name="train", **opts)
    query = cached_multiobject(src["test"], a.query, f"{a.cifar}:test", seed=a.seed + 1, progress=progress,
                               name="query", **opts)
    db = train
    print(f"multi-object CIFAR-10: {a.canvas}x{a.canvas} canvases, train = database {len(train)}, "
          f"query {len(query)}, labels/image {train.labels.sum(1).mean():.2f}; {a.epochs} epochs", flush=True)
    rows, per_cat, out = [], [], Path(a.out)
    for bits in [int(b) for b in a.bits.split(",")]:
        cfg = TrainConfig(data="multiobject", seed=a.seed, model="dsh", bits=bits, image_size=a.canvas,
                          epochs=a.epochs, batch_size=a.batch, optimizer="adam", lr=a.lr, weight_decay=1e-4,
                          schedule="cosine", out=str(out / f"dsh{bits}"))
        t0 = time.perf_counter()
        res = run_train(cfg, train, progress=progress)
        secs = time.perf_counter() - t0
        qc = encode((res.model, cfg), query, progress=False).codes
        dc = encode((res.model, cfg), db, progress=False).codes
        rows.append(("DSH (whole image)", bits, metrics(qc, dc, query.labels, db.labels, bits), secs))
        print(rows[-1], flush=True)
        per_cat.append(("DSH (whole image)", bits, per_category(qc, dc, query, db, bits), secs))

        icfg = TrainConfig(method="iah", bits=bits, image_size=a.canvas, epochs=a.epochs, batch_size=a.batch, lr=a.lr,
                           seed=a.seed, out=str(out / f"iah{bits}"))
        t0 = time.perf_counter()
        ires = run_train(icfg, train, progress=progress)
        secs = time.perf_counter() - t0
        iq = encode((ires.model, icfg), query, progress=False)
        idb = encode((ires.model, icfg), db, progress=False)
        rows.append(("IAH semantic", bits, metrics(iq.codes, idb.codes, query.labels, db.labels, bits), secs))
        print(rows[-1], flush=True)
        per_cat.append(("IAH semantic", bits, per_category(iq.codes, idb.codes, query, db, bits), secs))
        cat = category_metrics(iq.category, idb.category, query.labels, db.labels, bits)
        rows.append(("IAH category-aware", bits, cat, secs))
        per_cat.append(rows[-1])
        print(rows[-1], flush=True)
        tie = category_metrics(iq.category, idb.category, query.labels, db.labels, bits, iq.codes, idb.codes)
        rows.append(("IAH cat. + sem. ties", bits, tie, secs))
        per_cat.append(rows[-1])
        print(rows[-1], flush=True)
    table("Whole-image retrieval (semantic codes; category-aware: per (query, category) protocol)", rows)
    table("Per (query, category) protocol for every method (relevant = contains the category; one code per "
          "image is used for every category of DSH / IAH semantic)", per_cat)
    print("(IAH semantic and category-aware share one trained model per code length, hence one train time.)")
    payload = json.dumps({"args": vars(a), "rows": [{"method": r[0], "bits": r[1], **r[2], "train_seconds": r[3]}
                                                    for r in rows],
                          "per_category": [{"method": r[0], "bits": r[1], **r[2]} for r in per_cat]},
                         indent=2).encode()
    atomic_write(out / "results.json", lambda fh: fh.write(payload))


if __name__ == "__main__":
    main()
