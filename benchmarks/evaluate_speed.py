"""Seconds for evaluate() on random codes: 10k queries x 50k database x 64 bits, 10 classes.

CPU seconds are reported too: wall time depends on what else runs on the machine.

Run: PYTHONPATH=src python benchmarks/evaluate_speed.py [--queries N] [--database N] [--bits B]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from deephash.evaluation import evaluate, mean_average_precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--database", type=int, default=50_000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    codes = lambda n: rng.integers(0, 256, (n, args.bits // 8), dtype=np.uint8)  # noqa: E731
    labels = lambda n: np.eye(args.classes, dtype=np.uint8)[rng.integers(0, args.classes, n)]  # noqa: E731
    q, db, ql, dl = codes(args.queries), codes(args.database), labels(args.queries), labels(args.database)
    print(f"{args.queries} queries x {args.database} database x {args.bits} bits, {args.classes} classes")
    for name, run in (
        ("mean_average_precision (mAP@all, both rules)", lambda: mean_average_precision(q, db, ql, dl, progress=False)),
        ("evaluate (all metrics and curves)", lambda: evaluate(q, db, ql, dl, topk=(1000, 5000), progress=False)),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        print(f"{name}: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    print(f"load average while running: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores; other jobs slow this down)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
