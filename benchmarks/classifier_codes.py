"""What frozen features allow under a protocol: the mAP of codes that are a linear classifier's predicted class.

Not a test: run by hand, e.g.
    python benchmarks/classifier_codes.py --recipe configs/methods_lite2.yaml --protocols cifar10-1,dsh --split val

A multinomial logistic regression is fitted on the protocol's training images' stored features (the same
store ``methods.py --fast`` reads), and every query and database image gets the one-hot code of its predicted
class: equal codes within a predicted class, Hamming distance 2 between classes. Their mAP is what a hash head
that only sorted images into classes as well as a linear classifier would score; a learnt head can beat it by
ranking within a class, but the classifier's accuracy shows how separable the frozen features are with this
many labelled images. ``--tta`` averages the classifier's probabilities over each image and its mirror.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from method_features import DEFAULT_DATA, backbone_model, cifar_pool, stored  # noqa: E402
from methods import RESULTS, protocol_indices, recipe  # noqa: E402

from deephash.evaluation import evaluate  # noqa: E402


def class_codes(predicted: np.ndarray, classes: int) -> np.ndarray:
    """Packed one-hot codes of predicted classes (at least 16 bits, whole bytes)."""
    onehot = np.zeros((len(predicted), max(16, 8 * -(-classes // 8))), np.uint8)
    onehot[np.arange(len(predicted)), predicted] = 1
    return np.packbits(onehot, axis=1)


def run(a) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    settings, _ = recipe(Path(a.recipe))
    splits, labels, boundary = cifar_pool(a.data)
    model = backbone_model(settings["model"], settings["image_size"])
    views = [False, True] if a.tta else [False]
    feats = {m: np.concatenate([stored(model, splits[s].images, m, fast=True).numpy() for s in ("train", "test")])
             for m in views}
    y = labels.argmax(1) if labels.ndim > 1 else labels
    rows = []
    for protocol in a.protocols.split(","):
        train, query, db = protocol_indices(protocol, labels, boundary, a.split, a.seed)
        t = time.perf_counter()
        scaler = StandardScaler().fit(feats[False][train])
        clf = LogisticRegression(C=a.c, max_iter=2000).fit(scaler.transform(feats[False][train]), y[train])

        def predict(idx):
            p = np.mean([clf.predict_proba(scaler.transform(feats[m][idx])) for m in views], axis=0)
            return p.argmax(1)

        pq, pdb = predict(query), predict(db)
        classes = int(y.max()) + 1
        cq, cdb = class_codes(pq, classes), class_codes(pdb, classes)
        r = evaluate(cq, cdb, labels[query], labels[db], bits=8 * cq.shape[1], topk=(1000,), progress=False)["metrics"]
        row = {"protocol": protocol if a.split == "test" else f"{protocol}-val", "train": len(train),
               "query": len(query), "database": len(db), "accuracy_query": float((pq == y[query]).mean()),
               "accuracy_database": float((pdb == y[db]).mean()), "mAP": r["mAP"]["deterministic"],
               "mAP_tie_aware": r["mAP"]["tie_aware"], "mAP@1000": r["mAP@1000"]["deterministic"],
               "tta_mirror": a.tta, "C": a.c, "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nclassifier codes on {settings['model']} {settings['image_size']}px stored features "
          f"(tta mirror {a.tta}): mAP@all stable / tie-aware, query accuracy")
    print(f"{'protocol':<15} {'train':>6} {'mAP':>7} {'tie':>7} {'acc':>7}")
    for r in rows:
        print(f"{r['protocol']:<15} {r['train']:>6} {r['mAP']:>7.4f} {r['mAP_tie_aware']:>7.4f} "
              f"{r['accuracy_query']:>7.4f}")
    out = Path(a.json_out or RESULTS) / f"classifier_codes_{a.split}{'_' + a.tag if a.tag else ''}.json"
    out.write_text(json.dumps({"recipe": Path(a.recipe).name, "split": a.split, "seed": a.seed, "results": rows},
                              indent=2))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--recipe", default=str(ROOT / "configs" / "methods_lite2.yaml"))
    ap.add_argument("--protocols", default="cifar10-1,dsh")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--tta", action="store_true", help="average the probabilities of each image and its mirror")
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength of the classifier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--json-out", default=None)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
