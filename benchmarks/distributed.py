"""Throughput of training and encoding in one process or under torchrun (docs/distributed.md).

Trains ``--iterations`` steps (timed without the frozen-feature store, which is read from the cache or computed
before the clock starts) and encodes a split, sharded over the ranks and merged on rank 0; rank 0 prints one
JSON line: world size, threads per process, training and encoding images/s (global: all ranks together).

Run (1 process x 2 threads, then 2 processes x 1 thread):
    python benchmarks/distributed.py --data CIFAR --bits 48 --iterations 100 --threads 2
    torchrun --nproc-per-node 2 benchmarks/distributed.py --data CIFAR --bits 48 --iterations 100 --threads 1
    (add -c configs/cifar10_best.yaml for the frozen-backbone recipe)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from deephash import distributed
from deephash.retrieval import Encoder
from deephash.runs import encode, get_method
from deephash.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config")
    ap.add_argument("--data", required=True)
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--protocol", default="dsh")
    ap.add_argument("--encode-split", default="query")
    ap.add_argument("--encode-limit", type=int, default=0, help="Encode only the first N images of the split.")
    args = ap.parse_args()
    distributed.init_from_env("cpu")
    rank, world = distributed.rank(), distributed.world_size()
    out = tempfile.mkdtemp(prefix="ddp-bench-") if rank == 0 else ""
    out = distributed.gather_objects(out)[0]
    cfg = TrainConfig.assemble(args.config, dict(data=args.data, bits=args.bits, iterations=args.iterations,
                                                 threads=args.threads, out=out, protocol=args.protocol))
    split = cfg.load_split(progress=False)
    trainer = Trainer(cfg, split.train, progress=False)
    res = trainer.fit()
    train_ips = trainer.step * cfg.batch_size / (res.seconds - res.feature_seconds)

    encoder = Encoder(res.checkpoint)
    ds = encoder.dataset(split=args.encode_split)
    if args.encode_limit:
        ds = ds.subset(range(min(args.encode_limit, len(ds))))
    distributed.barrier()
    t = time.perf_counter()
    batch = get_method(encoder.method).encode_batch_size
    enc = encode(encoder.trained, ds, batch, progress=False, rows=distributed.shard_range(len(ds), rank, world, batch))
    distributed.gather_objects(enc.codes, dst=0)  # a collective: the timing includes merging on rank 0
    encode_seconds = time.perf_counter() - t
    if rank == 0:
        print(json.dumps({"world": world, "threads": args.threads, "config": args.config or "paper net",
                          "train_steps": trainer.step, "batch": cfg.batch_size,
                          "train_images_per_s": round(train_ips, 1), "feature_seconds": round(res.feature_seconds, 1),
                          "encoded": len(ds), "encode_images_per_s": round(len(ds) / encode_seconds, 1),
                          "load_after": os.getloadavg()[0]}))
    distributed.close()


if __name__ == "__main__":
    main()
