"""The fast-ingest knobs of docs/ingest.md, A/B in one run: the AFTER path as first shipped (ONNX Runtime with
spinning threads, the model's train/eval mode switched around every runtime call, 32 images decoded ahead)
against today's, and today's with OpenVINO, on the coco128 JPEGs. The variants take turns, ``--rounds`` times;
per variant the median images/s, the process CPU ms per image, and the median of its per-round ratio to the
first variant (the load of a busy machine falls on every variant alike: report the ratios).

Not a test: run by hand, alone on the machine (it is timed), e.g.
    python benchmarks/ingest_knobs.py --checkpoint runs/best/48/last.ckpt --rounds 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import deephash.retrieval.encoder as encoder_module  # noqa: E402
from deephash.codes import encode_outputs  # noqa: E402
from deephash.data import list_images  # noqa: E402
from deephash.index import HammingIndex  # noqa: E402
from deephash.models import runtime as rt  # noqa: E402
from deephash.models.hashing_model import HashingModel  # noqa: E402
from deephash.retrieval import Encoder, ImageIndex  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TODAY = HashingModel.encode
CHUNK = encoder_module.CHUNK


def first_encode(self, x, features=False):
    """``HashingModel.encode`` as first shipped: eval() before and train(was) after the runtime call too."""
    was = self.training
    self.eval()
    try:
        outputs, feats = self.runtime(x)
        codes = encode_outputs(outputs)
        return (codes, feats.float().cpu().numpy().astype(np.float16)) if features else codes
    finally:
        self.train(was)


def variant(ckpt: str, runner, first: bool = False):
    enc = Encoder(ckpt, fast=False)
    enc.model.use_runtime(runner(rt.export(enc.model)))
    semantic = HammingIndex(-(-enc.bits // 8) * 8)
    semantic.code_bits = enc.bits
    index = ImageIndex(semantic, checkpoint=ckpt)
    index.use_encoder(enc)

    def add(paths):
        HashingModel.encode, encoder_module.CHUNK = (first_encode, 32) if first else (TODAY, CHUNK)
        try:
            return index.get_codes(index.add(paths).ids)
        finally:
            HashingModel.encode, encoder_module.CHUNK = TODAY, CHUNK

    return add



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=str(DATASETS))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    paths = list_images(Path(args.data) / "coco128" / "images")[:args.images]
    variants = {"AFTER as first shipped (ORT spinning)": lambda: variant(args.checkpoint, lambda d: rt.OnnxRunner(d, spin=True), True),
                "AFTER today (ORT, threads sleep)": lambda: variant(args.checkpoint, rt.OnnxRunner)}
    try:
        import openvino  # noqa: F401
        variants["AFTER today, OpenVINO (fp32)"] = lambda: variant(args.checkpoint, rt.OpenVinoRunner)
    except ImportError:
        pass
    adds = {name: make() for name, make in variants.items()}
    for add in adds.values():
        add(paths[:8])
    load = os.getloadavg()
    print(f"coco128 JPEGs: {len(paths)} images, {args.rounds} rounds; load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
    rates, cpu, codes = {n: [] for n in adds}, {n: [] for n in adds}, {}
    for _ in range(args.rounds):
        for name, add in adds.items():
            t, c = time.perf_counter(), time.process_time()
            codes[name] = add(paths)
            rates[name].append(len(paths) / (time.perf_counter() - t))
            cpu[name].append(1e3 * (time.process_time() - c) / len(paths))
    first = next(iter(adds))
    ref = np.unpackbits(codes[first], axis=1)
    for name in adds:
        ratio = np.median(np.array(rates[name]) / np.array(rates[first]))
        equal = 100 * (np.unpackbits(codes[name], axis=1) == ref).mean()
        print(f"  {name:<40} {np.median(rates[name]):7.1f} images/s  {np.median(cpu[name]):6.2f} CPU ms/image  "
              f"x{ratio:.3f}  bits equal: {equal:.3f}%")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
