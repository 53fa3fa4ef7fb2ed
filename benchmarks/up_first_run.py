"""The first ``deephash up`` of a photo folder (``sync_folder`` with the default ITQ model): milliseconds per
photo to fit the model, to encode and index the photos, and in all, for this source tree or another one
(``--src``: e.g. an earlier commit unpacked by ``git archive``), so that before and after run on one machine.

Not a test: run by hand, alone on the machine if the numbers are to be compared, e.g.
    mkdir -p /tmp/before && git archive HEAD~1 src | tar -x -C /tmp/before
    python benchmarks/up_first_run.py --photos 200 --src /tmp/before/src --label before
    python benchmarks/up_first_run.py --photos 200 --label after

Each run is a fresh process with an empty ``DEEPHASH_CACHE`` (no stored features, no exported ONNX graph:
what a new user's first run meets) on a fresh copy of the photos (the first ``--photos`` coco128 JPEGs, about
640x480). The phases are timed by wrapping the sync's own functions: the fit (``_fit_model`` before,
``_fit_plan`` + ``_fit`` after: importing torch, decoding the sample, backbone features, ITQ) and the ingest
(``_ingest``: hashing, encoding and committing); ``total`` is the whole ``sync_folder`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SRC = Path(__file__).resolve().parents[1] / "src"


def child(folder: str) -> None:
    """One timed first sync of ``folder`` in this process (run with PYTHONPATH set to the tree to time)."""
    from deephash.retrieval import ingest

    times: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    # before: _fit_model did it all; after: _fit_plan (settings, importing torch) then _fit
    for fit in ("_fit_model", "_fit_plan", "_fit"):
        if hasattr(ingest, fit):
            setattr(ingest, fit, timed("fit", getattr(ingest, fit)))
    ingest._ingest = timed("ingest", ingest._ingest)
    t = time.perf_counter()
    report = ingest.sync_folder(folder, progress=False)
    times["total"] = time.perf_counter() - t
    print(json.dumps({"photos": report.total, "seconds": times}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200, help="coco128 JPEGs to index (at most 256)")
    ap.add_argument("--src", default=str(SRC), help="the deephash source tree to time (default: this one)")
    ap.add_argument("--label", default="", help="name of the row")
    ap.add_argument("--rounds", type=int, default=1, help="first runs to time (each from an empty cache)")
    ap.add_argument("--data", default=str(DATASETS), help="the shared datasets folder")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    photos = sorted(Path(args.data, "coco128", "images").rglob("*.jpg"))[:args.photos]
    if len(photos) < args.photos:
        sys.exit(f"error: {len(photos)} coco128 photos under {args.data}, asked for {args.photos}")
    load = os.getloadavg()
    print(f"{args.label or args.src}: {len(photos)} photos; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} cores")
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp, "photos")
            folder.mkdir()
            for p in photos:
                shutil.copy(p, folder / f"{p.parent.name}_{p.name}")
            env = {**os.environ, "PYTHONPATH": args.src, "DEEPHASH_CACHE": str(Path(tmp, "cache")),
                   "DEEPHASH_PROGRESS": "0"}
            out = subprocess.run([sys.executable, __file__, "--child", str(folder)], env=env, capture_output=True,
                                 text=True)
            if out.returncode:
                sys.exit(out.stderr)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            n, s = got["photos"], got["seconds"]
            print(f"  round {r + 1}: fit {1000 * s['fit'] / n:.1f} ms/photo, ingest {1000 * s['ingest'] / n:.1f} "
                  f"ms/photo, total {1000 * s['total'] / n:.1f} ms/photo ({s['total']:.1f} s for {n} photos)")


if __name__ == "__main__":
    main()
