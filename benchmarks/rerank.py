"""Two-stage search: what re-ranking the Hamming candidates by feature cosine does to mAP@1000 and P@10, and
what it costs per query.

Not a test: run by hand, e.g.
    python benchmarks/rerank.py cifar10 --checkpoint runs/best/48/last.ckpt    # DSH, protocol dsh
    python benchmarks/rerank.py coco128 --checkpoint runs/iah-demo/model/last.ckpt --data ../shared/datasets/coco128
    python benchmarks/rerank.py cost --checkpoint runs/best/48/last.ckpt       # µs/query (time it alone)

A search with ``rerank=F`` ranks the k*F nearest codes (ties by insertion order, as the index does) by
cosine similarity of the stored float16 features to the query's; mAP@1000 re-ranks the 1000*F nearest, P@10
the 10*F nearest. The rows: Hamming only; re-ranked by the backbone's pooled features (what
``ImageIndex`` keeps); and, for comparison, by the model's own real-valued code outputs before the sign (the
hash layer's, which a supervised model trained to separate its classes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deephash.codes import encode_outputs  # noqa: E402
from deephash.evaluation import evaluate, mean_average_precision  # noqa: E402
from deephash.index import HammingIndex  # noqa: E402

FACTORS = (2, 5, 10)


def ap_at(relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k per row of a ranked relevance matrix, the project's convention (denominator: relevant in top k)."""
    rel = relevant[:, :k].astype(np.float64)
    hits = np.cumsum(rel, 1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    n = rel.sum(1)
    return np.where(n > 0, (prec * rel).sum(1) / np.maximum(n, 1), 0.0)


def normalise(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float32)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)


def rankings(qcodes, dbcodes, depth: int) -> np.ndarray:
    """The ``depth`` Hamming nearest per query, ties by insertion order (HammingIndex, flat engine)."""
    idx = HammingIndex(dbcodes.shape[1] * 8, engine="flat")
    idx.add(dbcodes)
    return idx.search(qcodes, depth)[1]


def scores(qcodes, dbcodes, qlab, dblab, views: dict, k_map: int = 1000, k_p: int = 10) -> list[dict]:
    k_map = min(k_map, len(dbcodes))
    depth = min(k_map * max(FACTORS), len(dbcodes))
    cand = rankings(qcodes, dbcodes, depth)
    keep = (qlab & dblab.any(0)).any(1)  # queries with nothing relevant are excluded, as mean_average_precision does
    cuts = [(f, min(k_map * f, depth), min(k_p * f, depth)) for f in FACTORS]
    sums = {(name, f): np.zeros(2) for name in views for f in FACTORS}
    base = np.zeros(2)
    for s in range(0, len(cand), 256):
        c, ql, kp = cand[s:s + 256], qlab[s:s + 256], keep[s:s + 256]
        rel = lambda ranked: (ql[:, None, :] & dblab[ranked]).any(2)  # noqa: E731
        base += [ap_at(rel(c[:, :k_map]), k_map)[kp].sum(), rel(c[:, :k_p]).mean(1)[kp].sum()]
        for name, (qf, dbf) in views.items():
            sim = np.take_along_axis(qf[s:s + 256] @ dbf.T, c, 1)  # one product per chunk serves every factor
            for f, dm, dp in cuts:
                top = lambda d, n: np.take_along_axis(c[:, :d], np.argsort(-sim[:, :d], 1, kind="stable")[:, :n], 1)  # noqa: E731
                sums[name, f] += [ap_at(rel(top(dm, k_map)), k_map)[kp].sum(), rel(top(dp, k_p)).mean(1)[kp].sum()]
    n = keep.sum()
    rows = [{"rerank": "none", "factor": 1, "mAP@1000": base[0] / n, "P@10": base[1] / n}]
    check = mean_average_precision(qcodes, dbcodes, qlab, dblab, topk=k_map, progress=False)["deterministic"]
    assert abs(check - rows[0]["mAP@1000"]) < 1e-9, (check, rows[0])  # same ranking and AP as the library's
    tied = evaluate(qcodes, dbcodes, qlab, dblab, topk=(k_p, k_map), ndcg_k=(), progress=False)["metrics"]
    assert abs(tied[f"P@{k_p}"]["deterministic"] - rows[0]["P@10"]) < 1e-9, (tied, rows[0])
    # the expected value over every order of the tied codes, beside the index's insertion order
    rows[0].update({"mAP@1000 tie-aware": tied[f"mAP@{k_map}"]["tie_aware"], "P@10 tie-aware": tied[f"P@{k_p}"]["tie_aware"]})
    rows += [{"rerank": name, "factor": f, "mAP@1000": v[0] / n, "P@10": v[1] / n} for (name, f), v in sums.items()]
    return [{k: float(v) if isinstance(v, np.floating) else v for k, v in r.items()} for r in rows]


@torch.inference_mode()
def cifar10(args) -> dict:
    from deephash.data.base import resize_batch
    from deephash.features import stored_features
    from deephash.retrieval import Encoder

    enc = Encoder(args.checkpoint)  # ONNX Runtime when installed: the same codes, faster
    model = enc.model
    sp = enc._dsh_split(None, None, progress=False)
    db, q = sp.database, sp.query
    chosen = f"all {len(q):,} queries"
    if args.queries and args.queries < len(q):
        chosen = f"{args.queries:,} of the {len(q):,} queries drawn at random (seed {args.seed})"
        q = q.subset(np.sort(np.random.default_rng(args.seed).choice(len(q), args.queries, replace=False)))
    f_db = stored_features(model, db.images)  # the training run stored them (database = training images)
    if f_db is None:
        f_db = torch.from_numpy(enc.encode_dataset(db, features=True).features.astype(np.float32))
    y_db = torch.cat([model.head(f_db[s:s + 4096]) for s in range(0, len(f_db), 4096)])
    y_q, f_q = [], []
    images = torch.from_numpy(q.images)
    for s in range(0, len(images), 256):
        x = resize_batch(images[s:s + 256].permute(0, 3, 1, 2).float().div_(255.0), model.image_size)
        y, f = model.runtime(x) if model.runtime is not None else (model(x), model.features(x))
        y_q.append(y)
        f_q.append(f)
        print(f"query features {s + len(x)}/{len(images)}", file=sys.stderr, flush=True)
    y_q, f_q = torch.cat(y_q), torch.cat(f_q)
    views = {"backbone (pooled, float16)": (normalise(f_q.numpy().astype(np.float16)),
                                            normalise(f_db.numpy().astype(np.float16))),
             "code outputs (hash layer, before sign)": (normalise(y_q.numpy()), normalise(y_db.numpy()))}
    qc, dbc = encode_outputs(y_q), encode_outputs(y_db)
    qcls, dbcls = q.labels.argmax(1), db.labels.argmax(1)
    top = dbcls[rankings(qc, dbc, 10)] == qcls[:, None]  # Hamming-only top 10, ties by insertion order
    return {"data": f"CIFAR-10, protocol dsh ({chosen}, {len(db):,} database)", "bits": enc.bits,
            "query_classes": np.bincount(qcls, minlength=q.labels.shape[1]).tolist(),
            "database_order": "class by class" if (np.diff(dbcls) >= 0).all() else "mixed",
            "P@10_by_query_class": [round(float(top[qcls == c].mean()), 4) for c in range(q.labels.shape[1])],
            "rows": scores(qc, dbc, q.labels.astype(bool), db.labels.astype(bool), views)}


def coco128(args) -> dict:
    from deephash.data import load_box_source
    from deephash.retrieval import Encoder

    enc = Encoder(args.checkpoint)
    splits = load_box_source(args.data, enc.image_size[0])
    names = list(splits)
    db, q = splits[names[0]], splits[names[1]]
    q = q.subset([i for i in range(len(q)) if q.labels[i].any()])
    e_db, e_q = enc.encode_dataset(db, features=True), enc.encode_dataset(q, features=True)
    views = {f"{enc.method} pooled feature map (float16)": (normalise(e_q.features), normalise(e_db.features))}
    return {"data": f"coco128: {len(q)} labelled val2017 queries, {len(db)} train2017 database", "bits": enc.bits,
            "method": enc.method,
            "rows": scores(e_q.codes, e_db.codes, q.labels.astype(bool), db.labels.astype(bool), views)}


def cost(args) -> dict:
    """µs per query of ImageIndex.search by id (k=10) without and with re-ranking, on the CIFAR-10 database."""
    from deephash.features import backbone_features
    from deephash.retrieval import Encoder, ImageIndex

    enc = Encoder(args.checkpoint)
    db = enc._dsh_split(None, None, progress=False).database
    with torch.inference_mode():
        f = backbone_features(enc.model, db.images, progress=False)
        codes = np.concatenate([encode_outputs(enc.model.head(f[s:s + 4096])) for s in range(0, len(f), 4096)])
    sem = HammingIndex(codes.shape[1] * 8)
    sem.keep_features(f.shape[1])
    sem.add(codes, features=f.numpy())
    index = ImageIndex(sem)
    rng = np.random.default_rng(0)
    queries = rng.choice(len(codes), args.queries or 1000, replace=False)
    out = []
    for factor in (None, *FACTORS):
        index.search(ids=queries[:10], k=10, rerank=factor)  # warm (engines, kernels)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for i in queries:
                index.search(ids=[int(i)], k=10, rerank=factor)
            best = min(best, time.perf_counter() - t)
        out.append({"rerank": factor or "none", "us_per_query": round(best / len(queries) * 1e6, 1)})
    return {"data": f"CIFAR-10 database ({len(codes)} codes, {f.shape[1]}-value features), k=10, one query per call",
            "rows": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("cifar10", "coco128", "cost"))
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=None, help="coco128: the dataset folder")
    ap.add_argument("--queries", type=int, default=None, help="cifar10: N queries drawn at random (--seed; default all); "
                    "cost: queries timed (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="cifar10: seed of the random draw of --queries")
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    res = {"cifar10": cifar10, "coco128": coco128, "cost": cost}[args.what](args)
    res["load_before"], res["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
    print(res["data"], f"(load average {res['load_before']} before, {res['load_after']} after)")
    for r in res["rows"]:
        print("  " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
