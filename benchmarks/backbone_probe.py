"""Which frozen backbone and input size give CIFAR-10 the most separable features: a cheap probe before a
full 60k-image feature pass.

Not a test: run by hand, e.g.
    nice -n 5 python benchmarks/backbone_probe.py --backbones efficientnet_lite0:160,efficientnet_lite2:192

For each backbone:size, the pooled features of 5,000 training images (seeded, all classes) and of 1,000 other
training images (never test images) are computed (and cached like every feature store), then a multinomial
logistic regression is fitted on the 5,000 and scored on the 1,000. Held-out accuracy bounds what a hash head
on the same frozen features can reach: under protocol dsh a query's mAP is high only when its code lands in
its class's cluster. Prints a table with the feature-pass images/s (on whatever else the machine is running).
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

from method_features import DEFAULT_DATA, backbone_model  # noqa: E402

from deephash.data import load_source  # noqa: E402
from deephash.features import backbone_features  # noqa: E402


def probe(backbone: str, size: int, train_x: np.ndarray, train_y: np.ndarray, held_x: np.ndarray,
          held_y: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    model = backbone_model(backbone, size)
    t = time.perf_counter()
    f_train = backbone_features(model, train_x, progress=False, fast=True).numpy()
    f_held = backbone_features(model, held_x, progress=False, fast=True).numpy()
    seconds = time.perf_counter() - t
    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(C=0.05, max_iter=2000).fit(scaler.transform(f_train), train_y)
    acc = float((clf.predict(scaler.transform(f_held)) == held_y).mean())
    return {"backbone": backbone, "size": size, "held_out_accuracy": acc,
            "feature_images_per_s": round((len(train_x) + len(held_x)) / seconds, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="efficientnet_lite0:160,efficientnet_lite2:192,efficientnet_lite2:260",
                    help="comma-separated backbone:size")
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--held", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    train = load_source(a.data, image_size=32, progress=False)["train"]
    labels = train.labels.argmax(1)
    rng = np.random.default_rng(a.seed)
    pick = rng.permutation(len(labels))
    fit, held = np.sort(pick[:a.train]), np.sort(pick[a.train:a.train + a.held])
    rows = []
    print(f"{'backbone':<20} {'px':>4} {'held-out acc':>12} {'img/s':>7}", flush=True)
    for item in a.backbones.split(","):
        name, _, size = item.partition(":")
        r = probe(name, int(size), train.images[fit], labels[fit], train.images[held], labels[held])
        rows.append(r)
        print(f"{name:<20} {size:>4} {r['held_out_accuracy']:>12.4f} {r['feature_images_per_s']:>7.1f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"train": a.train, "held": a.held, "seed": a.seed, "rows": rows},
                                           indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
