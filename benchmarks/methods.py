"""Every hashing method on the same stored backbone features of CIFAR-10: one table per protocol.

Not a test: run by hand (the features come from ``benchmarks/method_features.py``'s cache), e.g.
    python benchmarks/methods.py --split val --protocols dsh,cifar10-1 --bits 48            # choose settings
    python benchmarks/methods.py --split test --protocols dsh,cifar10-1 --bits 16,32,48,64  # the table
    python benchmarks/methods.py --split val --methods csq --set csq.lam=0.001 --tag lam1e-3  # one ablation
    python benchmarks/methods.py --table-from benchmarks/results/methods_dsh_test.json

Each method trains the recipe's head (``--recipe``, a config in configs/: backbone, input size, head, optimiser,
epochs; the method's own options from its ``method_options.<name>`` section) through the training engine
(``Trainer``), whose frozen-feature store is handed the stored features; so the training minutes are the
head's alone (the one feature pass per backbone is reported by method_features.py). Scores: mAP over the
whole database, stable (ties by database order) and tie-aware, mAP@1000 and P@H<=2 (precision of the items
within Hamming radius 2; a query with none there is left out of the mean, as everywhere in deephash).

Splits: ``test`` is the protocol itself (dsh: 10k test queries against the 50k training images; cifar10-1:
1k queries, 5k training images, 59k database). ``val`` never sees a test query: under dsh 5k training images
are held out as queries against the other 45k (which are also the training set); under cifar10-1, 1k of the
5k training images (100 per class) are the queries, the other 4k train, the database is cifar10-1's less
those 1k (its test queries are never in it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from method_features import DEFAULT_DATA, backbone_model, cifar_pool, stored  # noqa: E402

from deephash.codes import encode_outputs  # noqa: E402
from deephash.data import ArrayDataset  # noqa: E402
from deephash.data.protocols import _per_class, split_indices  # noqa: E402
from deephash.evaluation import evaluate  # noqa: E402
from deephash.runs import load_checkpoint, model_from_checkpoint  # noqa: E402
from deephash.train import TrainConfig, Trainer  # noqa: E402

METHODS = ("dsh", "dpsh", "hashnet", "greedyhash", "csq")
RESULTS = ROOT / "benchmarks" / "results"


def protocol_indices(protocol: str, labels: np.ndarray, boundary: int, split: str, seed: int = 0):
    """(train, query, database) positions in the 60k pool for the protocol, or its validation split."""
    train, query, db = split_indices(protocol, labels, boundary, seed)
    if split == "test":
        return train, query, db
    rng = np.random.default_rng(seed)
    if protocol == "dsh":
        perm = rng.permutation(train)
        val, rest = np.sort(perm[:5000]), np.sort(perm[5000:])
        return rest, val, rest
    val = np.sort(train[_per_class(labels[train], 100, np.arange(len(train)), rng)])
    return np.setdiff1d(train, val), val, np.setdiff1d(db, val)


def recipe(path: Path) -> tuple[dict, dict]:
    """(TrainConfig settings, per-method option sections) of a recipe file."""
    d = TrainConfig.read_yaml(path)
    options = d.pop("method_options", {}) or {}
    d.pop("protocol", None)
    return d, options


@torch.inference_mode()
def head_outputs(model, feats: torch.Tensor) -> torch.Tensor:
    """Relaxed codes from stored rows (pooled features, or prefix maps run through the trained tail)."""
    model.eval()
    batch = 256 if feats.ndim > 2 else 4096
    return torch.cat([model.from_stored(feats[s:s + batch]) for s in range(0, len(feats), batch)])


def score(model, fq, fdb, yq, ydb, bits, fq_m=None, fdb_m=None) -> dict:
    """Metrics of the codes sign(head(features)); with mirrored features, of the mean of both views' outputs,
    with the one-view metrics of the same model under ``single_view`` (the test-time mirroring ablation)."""
    oq, odb = head_outputs(model, fq), head_outputs(model, fdb)
    one = _metrics(oq, odb, yq, ydb, bits)
    if fq_m is None:
        return one
    oq, odb = (oq + head_outputs(model, fq_m)) / 2, (odb + head_outputs(model, fdb_m)) / 2
    return {**_metrics(oq, odb, yq, ydb, bits), "single_view": one}


def _metrics(oq, odb, yq, ydb, bits) -> dict:
    r = evaluate(encode_outputs(oq), encode_outputs(odb), yq, ydb, bits=bits, topk=(1000,), progress=False)
    m = r["metrics"]
    return {"mAP": m["mAP"]["deterministic"], "mAP_tie_aware": m["mAP"]["tie_aware"],
            "mAP@1000": m["mAP@1000"]["deterministic"], "P@H<=2": m["P@H<=2"]["deterministic"]}


def fit_with_curve(trainer, points: int, feats, labels, query, db, train, bits, tta: bool, seed: int):
    """Train to the end, pausing at ``points`` evenly spaced epochs (not counted as training time) to score
    the queries and, to show the generalisation gap, 2,000 training images as queries against the same database.
    Returns (result, curve, training seconds)."""
    total = trainer.epochs
    stops = sorted({max(1, round(total * (i + 1) / points)) for i in range(points)}) if points else [total]
    seen = np.sort(np.random.default_rng(seed).choice(train, min(2000, len(train)), replace=False))
    curve, seconds = [], 0.0
    for stop in stops:
        trainer.epochs = stop
        t = time.perf_counter()
        res = trainer.fit()
        seconds += time.perf_counter() - t
        if points:
            q = score(res.model, feats[False][query], feats[False][db], labels[query], labels[db], bits,
                      *((feats[True][query], feats[True][db]) if tta else ()))
            tr = score(res.model, feats[False][seen], feats[False][db], labels[seen], labels[db], bits,
                       *((feats[True][seen], feats[True][db]) if tta else ()))
            curve.append({"epoch": trainer.epoch, "iterations": trainer.step, "train_s": round(seconds, 1),
                          "mAP": q["mAP"], "train_query_mAP": tr["mAP"],
                          **({"mAP_single_view": q["single_view"]["mAP"]} if "single_view" in q else {})})
            print(f"  curve: epoch {trainer.epoch} ({seconds / 60:.1f} min): mAP {q['mAP']:.4f} on the queries, "
                  f"{tr['mAP']:.4f} on 2,000 training images", flush=True)
    return res, curve, seconds


def run(a) -> int:
    settings, method_options = recipe(Path(a.recipe))
    for item in a.set:  # METHOD.KEY=JSON (a method option) or KEY=JSON (a TrainConfig setting)
        key, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        name, dot, opt = key.partition(".")
        if dot:
            method_options.setdefault(name, {})[opt] = value
        else:
            settings[key] = value
    splits, labels, boundary = cifar_pool(a.data)
    images = np.concatenate([splits["train"].images, splits["test"].images])
    pool = ArrayDataset(images, labels, splits["train"].class_names, None, "cifar10")
    size = settings["image_size"]
    model = backbone_model(settings["model"], size, settings.get("train_blocks", 0))
    t0 = time.perf_counter()
    views = [False, True] if (a.tta or settings.get("mirror")) else [False]
    protocols = a.protocols.split(",")
    need_test = a.split == "test" or any(p != "dsh" for p in protocols)  # dsh-val uses training images only
    parts = ("train", "test") if need_test else ("train",)
    feats = {m: torch.cat([stored(model, splits[s].images, m, fast=a.fast) for s in parts]) for m in views}
    print(f"features {settings['model']} {size}px views {views}: {(time.perf_counter() - t0):.0f} s "
          f"(from the cache when stored)", flush=True)
    methods = a.methods.split(",")
    for protocol in protocols:
        train, query, db = protocol_indices(protocol, labels, boundary, a.split, a.seed)
        sizes = {"protocol": protocol if a.split == "test" else f"{protocol}-val", "seed": a.seed,
                 "train": len(train), "query": len(query), "database": len(db)}
        described = (f"protocol {sizes['protocol']} (seed {a.seed}): train {len(train)}, query {len(query)}, "
                     f"database {len(db)}; {settings['model']} {size}px features"
                     + (f", last {settings['train_blocks']} blocks trained" if settings.get("train_blocks") else "")
                     + f"; tta mirror {a.tta}")
        print(described, flush=True)
        tag = f"_{a.tag}" if a.tag else ""
        path = Path(a.json_out or RESULTS) / f"methods_{protocol}_{a.split}{tag}.json"
        results = []
        for bits in [int(b) for b in a.bits.split(",")]:
            for method in methods:
                cfg = TrainConfig(**{**settings, "method": method, "method_options": method_options.get(method, {}),
                                     "bits": bits, "seed": a.seed,
                                     "out": f"{a.out}/{protocol}-{a.split}{tag}/{method}-{bits}"})
                if a.rescore:  # the finished run's checkpoint, scored again (e.g. with --tta): no training
                    ckpt = load_checkpoint(Path(a.out) / f"{protocol}-{a.split}_{a.rescore}/{method}-{bits}/last.ckpt")
                    trained, history, curve, steps = model_from_checkpoint(ckpt), ckpt["history"], [], ckpt["step"]
                    source = json.loads((path.parent / f"methods_{protocol}_{a.split}_{a.rescore}.json").read_text())
                    seconds = 60 * next(r["train_minutes"] for r in source["results"]
                                        if r["method"] == method and r["bits"] == bits)
                else:
                    trainer = Trainer(cfg, pool.subset(train), progress=False)
                    trainer.features = torch.stack([feats[m][train]
                                                    for m in ([False, True] if cfg.mirror else [False])])
                    res, curve, seconds = fit_with_curve(trainer, a.curve, feats, labels, query, db, train, bits,
                                                         a.tta, a.seed)
                    trained, history, steps = res.model, res.history, trainer.step
                m = score(trained, feats[False][query], feats[False][db], labels[query], labels[db], bits,
                          *((feats[True][query], feats[True][db]) if a.tta else ()))
                row = {"method": method, "bits": bits, **m, "train_minutes": round(seconds / 60, 2),
                       "iterations": steps, "epochs": cfg.epochs, "method_options": cfg.method_options,
                       "final_loss": history[-1]["loss"], "tta_mirror": a.tta, "curve": curve,
                       "history": history, **({"rescored_from": a.rescore} if a.rescore else {})}
                results.append(row)
                print(json.dumps(row), flush=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"split": sizes, "described": described, "recipe": Path(a.recipe).name,
                                           "settings": settings, "overrides": a.set, "results": results}, indent=2))
                tmp.replace(path)
        print_table(results, described)
    return 0


def plot_curves(results: list[dict], described: str, path: Path) -> None:
    """Learning curves of ``--curve`` runs: query mAP (solid) and training-image mAP (dashed) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, r in enumerate(x for x in results if x.get("curve")):
        color = f"C{i}"
        epochs = [c["epoch"] for c in r["curve"]]
        ax.plot(epochs, [c["mAP"] for c in r["curve"]], marker="o", color=color, label=f"{r['method']} {r['bits']}b")
        ax.plot(epochs, [c["train_query_mAP"] for c in r["curve"]], ls="--", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP@all")
    ax.set_title("solid: validation queries; dashed: 2,000 training images as queries", fontsize=9)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(described, 110)), fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def print_table(results: list[dict], described: str) -> None:
    one = any("single_view" in r for r in results)
    print(f"\n{described}; mAP@all stable / tie-aware, mAP@1000, P@H<=2, head training minutes"
          + ("; 1-view: mAP@all without test-time mirroring" if one else ""))
    print(f"{'method':<11} {'bits':>4} {'mAP':>7} {'tie':>7} {'@1000':>7} {'P@H<=2':>7} {'min':>6}"
          + (f" {'1-view':>7}" if one else ""))
    for r in results:
        print(f"{r['method']:<11} {r['bits']:>4} {r['mAP']:>7.4f} {r['mAP_tie_aware']:>7.4f} {r['mAP@1000']:>7.4f} "
              f"{r['P@H<=2']:>7.4f} {r['train_minutes']:>6.1f}"
              + (f" {r['single_view']['mAP']:>7.4f}" if "single_view" in r else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--recipe", default=str(ROOT / "configs" / "methods_lite0.yaml"),
                    help="base settings (a TrainConfig YAML; method_options may be keyed by method name)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--protocols", default="dsh,cifar10-1")
    ap.add_argument("--bits", default="48")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--tta", action="store_true", help="average the outputs of each image and its mirror")
    ap.add_argument("--set", nargs="*", default=[], metavar="[METHOD.]KEY=JSON")
    ap.add_argument("--fast", action="store_true", help="features from ONNX Runtime (method_features.py --fast)")
    ap.add_argument("--curve", type=int, default=0, metavar="N",
                    help="score at N evenly spaced epochs (queries and 2,000 training images): learning curves")
    ap.add_argument("--tag", default="", help="suffix of the results file name (an ablation)")
    ap.add_argument("--rescore", metavar="TAG", default="",
                    help="score the checkpoints of the finished runs tagged TAG (same --out) instead of training, "
                         "e.g. with --tta")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/methods", help="run folders (checkpoints)")
    ap.add_argument("--json-out", default=None, help="folder of the results JSON (default benchmarks/results)")
    ap.add_argument("--table-from", nargs="+", metavar="RESULTS_JSON")
    ap.add_argument("--plot", default=None, metavar="PNG", help="with --table-from: plot the runs' --curve data")
    a = ap.parse_args(argv)
    if a.table_from:
        results, described = [], []
        for f in a.table_from:
            d = json.loads(Path(f).read_text())
            print_table(d["results"], d["described"])
            results += d["results"]
            described.append(d["described"])
        if a.plot:
            plot_curves(results, "; ".join(dict.fromkeys(described)), Path(a.plot))
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
