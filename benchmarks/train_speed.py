"""Training and encoding speed of the DSH networks on this CPU: images/s, with and without channels-last,
and forward FLOPs per image.

Not a test: run by hand on an idle machine, e.g.
    python benchmarks/train_speed.py                 # all networks, ~3 minutes
    python benchmarks/train_speed.py --iterations 10 --models paper

Training speed is measured through ``deephash.train.Trainer`` itself (batches sliced from the uint8
array, batched augmentation, forward, DSH loss over all pairs, backward, optimiser step) on random
images after a warm-up; encoding through ``HashingModel.encode`` (inference mode, batch 256).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deephash.data import ArrayDataset  # noqa: E402
from deephash.train import TrainConfig, Trainer  # noqa: E402

NETWORKS = {
    "paper": dict(model="dsh", image_size=32, batch_size=200, optimizer="sgd"),
    "small-bn-w2": dict(model="dsh", image_size=32, batch_size=128, optimizer="adamw", crop_pad=4,
                        model_kwargs={"batch_norm": True, "width": 2}),
    "lite0-64": dict(model="efficientnet_lite0", image_size=64, batch_size=128, optimizer="adamw", crop_pad=8,
                     model_kwargs={"frozen_blocks": 3}),
}


def flops(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, *model.image_size))
    return counter.get_total_flops() / 1e9


def measure(name: str, channels_last: bool, iterations: int, out: str) -> dict:
    spec = NETWORKS[name]
    rng = np.random.default_rng(0)
    n = spec["batch_size"] * (iterations + 2)
    data = ArrayDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        np.eye(10, dtype=np.uint8)[rng.integers(0, 10, n)], [str(i) for i in range(10)])
    warm = Trainer(TrainConfig(**spec, bits=48, iterations=2, channels_last=channels_last, out=out), data,
                   progress=False)
    warm.fit()
    t = Trainer(TrainConfig(**spec, bits=48, iterations=iterations, channels_last=channels_last, out=out), data,
                progress=False)
    train_ips = t.fit().images_per_second
    model = t.model.eval()
    x = torch.rand(256, 3, *model.image_size)
    model.encode(x[:32])
    start = time.perf_counter()
    for _ in range(2):
        model.encode(x)
    encode_ips = 512 / (time.perf_counter() - start)
    return {"network": name, "channels_last": channels_last, "train_img_s": train_ips, "encode_img_s": encode_ips,
            "gflops": flops(model)}


def profile(name: str, channels_last: bool, out: str, rows: int = 12) -> None:
    """Where a training step's time goes: torch.profiler over 5 Trainer iterations, top ops by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    spec = NETWORKS[name]
    rng = np.random.default_rng(0)
    n = spec["batch_size"] * 7
    data = ArrayDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        np.eye(10, dtype=np.uint8)[rng.integers(0, 10, n)], [str(i) for i in range(10)])
    Trainer(TrainConfig(**spec, bits=48, iterations=2, channels_last=channels_last, out=out), data,
            progress=False).fit()
    t = Trainer(TrainConfig(**spec, bits=48, iterations=5, channels_last=channels_last, out=out), data,
                progress=False)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t.fit()
    print(f"\nprofile of 5 training iterations: {name}, {'channels-last' if channels_last else 'NCHW'}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(NETWORKS))
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", default="runs/train_speed")
    ap.add_argument("--profile", action="store_true", help="also print the top ops of each network's fastest layout")
    a = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'network':<12} {'layout':<13} {'train img/s':>11} {'encode img/s':>12} {'GFLOPs/img':>10}")
    best = {}
    for name in a.models.split(","):
        for cl in (False, True):
            r = measure(name, cl, a.iterations, a.out)
            print(f"{name:<12} {'channels-last' if cl else 'NCHW':<13} {r['train_img_s']:>11.0f} "
                  f"{r['encode_img_s']:>12.0f} {r['gflops']:>10.4f}", flush=True)
            if r["train_img_s"] > best.get(name, (0, None))[0]:
                best[name] = (r["train_img_s"], cl)
    if a.profile:
        for name, (_, cl) in best.items():
            profile(name, cl, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
