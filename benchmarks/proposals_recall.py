"""Recall of object proposals against ground-truth boxes (coco128 by default): the fraction of objects
covered by some proposal at IoU ≥ 0.5 / 0.7, for each generator and top-N, plus seconds per image.

    python benchmarks/proposals_recall.py [--data /path/to/coco128] [--size 128] [--top-n 16,32,64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deephash.data import load_box_source  # noqa: E402
from deephash.proposals import make_generator, select_top  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/datasets/coco128")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--top-n", default="16,32,64")
    ap.add_argument("--limit", type=int, default=128)
    a = ap.parse_args()
    ds = next(iter(load_box_source(a.data, a.size).values()))
    ds = ds.subset(range(min(a.limit, len(ds)))).as_arrays(progress=False)
    tops = [int(v) for v in a.top_n.split(",")]
    print(f"{len(ds)} images at {a.size}x{a.size}, {sum(len(b) for b in ds.boxes)} objects")
    print(f"{'generator':<10} {'top N':>6} {'recall@0.5':>11} {'recall@0.7':>11} {'s/image':>8}")
    for name in ("grid", "selective"):
        gen = make_generator(name)
        t0 = time.perf_counter()
        raw = [gen(ds.images[i]) for i in range(len(ds))]
        per_image = (time.perf_counter() - t0) / len(ds)
        for n in tops:
            hits = {0.5: 0, 0.7: 0}
            total = 0
            for i, (boxes, scores) in enumerate(raw):
                gt = ds.boxes_pixels(i, a.size, a.size)[:, 1:]
                if not len(gt):
                    continue
                props = select_top(boxes, scores, a.size, a.size, n)
                best = box_iou(torch.from_numpy(gt), torch.from_numpy(props)).max(1).values
                total += len(gt)
                for t in hits:
                    hits[t] += int((best >= t).sum())
            print(f"{name:<10} {n:>6} {hits[0.5] / total:>11.3f} {hits[0.7] / total:>11.3f} {per_image:>8.3f}")


if __name__ == "__main__":
    main()
