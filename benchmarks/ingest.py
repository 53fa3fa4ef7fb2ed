"""New-image throughput (decode + model + index add), BEFORE (the path ``ImageIndex.add`` took until now) and
AFTER (today's ``ImageIndex.add``), in one run, on real photos, large photos and CIFAR-size images.

Not a test: run by hand (alone on the machine: it is timed), e.g.
    python benchmarks/ingest.py --checkpoint runs/best/48/last.ckpt
    python benchmarks/ingest.py --checkpoint runs/best/48/last.ckpt --large 16 --cifar 256   # quicker

BEFORE: every file decoded in turn (JPEG draft mode towards the model's size, as both paths do), then the
model in PyTorch (channels-last when the checkpoint says so), with the frozen-feature store look-up.
AFTER: files decoded by a thread pool a batch ahead of the model, the model in ONNX Runtime when installed.
Two intermediate rows show what each part gives alone, and one AFTER with OpenVINO instead of ONNX Runtime
(when installed: ``deephash[openvino]``). Every row's codes are compared with BEFORE's bit by bit. With
``--rounds N`` every row runs N times, the rows taking turns, and the median rate is printed (a busy
machine's load then falls on every row alike).
Data: the coco128 JPEGs (about 640x480), 4000x3000 JPEGs made from them (quality 90, in a temporary folder),
and 32x32 CIFAR-10 test JPEGs. Model load and one warm-up batch are outside the timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deephash.data import ArrayDataset, list_images, load_image  # noqa: E402
from deephash.index import HammingIndex  # noqa: E402
from deephash.models.runtime import RUNNERS, RUNTIME_ENV  # noqa: E402
from deephash.retrieval import Encoder, ImageIndex  # noqa: E402
from deephash.runs import encode, load_trained  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def before(ckpt: str):
    """The former ``ImageIndex.add``: sequential decode, PyTorch model, stored-feature look-up, index add."""
    trained = load_trained(ckpt)
    size = tuple(trained.model.image_size)
    index = HammingIndex(-(-trained.model.bits // 8) * 8)

    def add(paths):
        pixels = np.stack([load_image(p, size) for p in paths])
        data = ArrayDataset(pixels, np.zeros((len(pixels), len(trained.class_names)), np.uint8), trained.class_names)
        enc = encode(trained, data, None, False, 0)
        index.add(enc.codes, metadata=[{"path": str(paths[i])} for i in enc.indices])
        return enc.codes

    return add


def after(ckpt: str, fast: bool = True, decode_threads: int | None = None, runtime: str | None = None):
    """Today's ``ImageIndex.add`` (in memory): ``decode_threads=1`` / ``fast=False`` turn each part off;
    ``runtime`` picks the inference runtime (``models/runtime.py``: onnxruntime, openvino)."""
    saved = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = runtime or saved or ""
    try:
        enc = Encoder(ckpt, fast=fast, decode_threads=decode_threads)
    finally:
        os.environ[RUNTIME_ENV] = saved or ""
    if runtime and not isinstance(enc.model.runtime, RUNNERS[runtime]):
        return None  # that runtime is not installed
    semantic = HammingIndex(-(-enc.bits // 8) * 8)
    semantic.code_bits = enc.bits
    index = ImageIndex(semantic, checkpoint=ckpt)
    index.use_encoder(enc)

    def add(paths):
        ids = index.add(paths).ids
        return index.get_codes(ids)

    return add


def make_large(src: list[Path], n: int, folder: Path) -> list[Path]:
    out = []
    for i, p in enumerate(src[:n]):
        q = folder / f"large{i:03d}.jpg"
        Image.open(p).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(q, quality=90)
        out.append(q)
    return out


def make_cifar(tar: Path, n: int, folder: Path) -> list[Path]:
    out = []
    with tarfile.open(tar) as tf:
        for m in tf:
            if m.isfile() and "/test/" in m.name and m.name.endswith(".jpg"):
                q = folder / f"c{len(out):05d}.jpg"
                q.write_bytes(tf.extractfile(m).read())
                out.append(q)
                if len(out) == n:
                    break
    return out


def timed(add, paths, warm) -> tuple[float, np.ndarray]:
    add(warm)
    t = time.perf_counter()
    codes = add(paths)
    return len(paths) / (time.perf_counter() - t), codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="the model (default recipe: frozen EfficientNet-Lite0, 160 px)")
    ap.add_argument("--data", default=str(DATASETS), help="the shared datasets folder")
    ap.add_argument("--coco", type=int, default=256, help="coco128 images (at most 256)")
    ap.add_argument("--large", type=int, default=32, help="4000x3000 JPEGs to make")
    ap.add_argument("--cifar", type=int, default=512, help="CIFAR-size images")
    ap.add_argument("--rounds", type=int, default=1, help="timings per row, the rows taking turns (median)")
    args = ap.parse_args()
    data = Path(args.data)
    coco = list_images(data / "coco128" / "images")[:args.coco]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "large").mkdir()
        (tmp / "cifar").mkdir()
        sets = {"coco128 JPEGs (~640x480)": coco,
                "4000x3000 JPEGs": make_large(coco, args.large, tmp / "large"),
                "CIFAR-size 32x32 JPEGs": make_cifar(data / "cifar10-jpg.tar.gz", args.cifar, tmp / "cifar")}
        paths_ = {"BEFORE (sequential decode, PyTorch)": lambda: before(args.checkpoint),
                  "threaded decode, PyTorch": lambda: after(args.checkpoint, fast=False),
                  "sequential decode, ONNX Runtime": lambda: after(args.checkpoint, decode_threads=1),
                  "AFTER (threaded decode, ONNX Runtime)": lambda: after(args.checkpoint, runtime="onnxruntime"),
                  "threaded decode, OpenVINO": lambda: after(args.checkpoint, runtime="openvino")}
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
        for name, paths in sets.items():
            print(f"\n{name}: {len(paths)} images")
            adds = {label: make() for label, make in paths_.items()}
            rates, codes = {label: [] for label in adds}, {}
            for _ in range(args.rounds):
                for label, add in adds.items():
                    if add is not None:
                        rate, codes[label] = timed(add, paths, paths[:8])
                        rates[label].append(rate)
            ref = None
            for label, add in adds.items():
                if add is None:
                    print(f"  {label:<40} (not installed)")
                    continue
                bits = np.unpackbits(codes[label], axis=1)
                if ref is None:
                    ref, note = bits, ""
                else:
                    note = f"  bits equal to BEFORE: {100 * (bits == ref).mean():.3f}%"
                print(f"  {label:<40} {np.median(rates[label]):7.1f} images/s{note}", flush=True)
        load = os.getloadavg()
        print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
