"""How far the fast encoding path's codes are from PyTorch's: bit agreement and mAP, PyTorch against ONNX Runtime
(and OpenVINO, and PyTorch forced to AVX2 kernels), one model, the same input tensors.

Not a test: run by hand, e.g.
    python benchmarks/runtime_agreement.py                        # trains the best recipe on 5,000 CIFAR-10 images
    python benchmarks/runtime_agreement.py --checkpoint runs/best/48/last.ckpt

Data: CIFAR-10 (the JPEG archive), protocol dsh, a seeded random subset: ``--train`` training images, which are
also the database, and ``--query`` test images. Without ``--checkpoint`` the best CIFAR-10 recipe
(configs/cifar10_best.yaml: frozen ImageNet EfficientNet-Lite0 at 160 px, 1024-unit ReLU layer, DSH loss) is
trained on the subset for ``--epochs``. Every image is run through the whole network from its pixels (no stored
features) by each variant:

- ``torch``: PyTorch eager, fp32, this CPU's best kernels (what ``DEEPHASH_RUNTIME=torch`` encodes with);
- ``torch-avx2``: the same in a child process with ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``,
  i.e. the kernels an AVX2-only x86-64 CPU gets; ``torch-sse41``: likewise with SSE4.1 kernels (another
  rounding of the same sums);
- ``onnxruntime``: the exported graph in ONNX Runtime's CPU provider, as ``encode``/``index add`` run it;
- ``onnxruntime-noopt``: the same graph with ONNX Runtime's graph optimisations off (no fusions: another
  rounding, since ONNX Runtime has no switch to pick its AVX2 kernels on an AVX-512 CPU);
- ``openvino``: the graph in OpenVINO's CPU plugin, fp32 (when installed).

For each variant against ``torch``: the share of equal bits, of codes equal in every bit, the most bits one code
differs by, the largest output difference, and the mAP (tie-aware, all database items, and @1000) of the
variant's own query and database codes, and of its query codes against the PyTorch database codes (a
database built by one path, searched by the other).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
ISA_ENV = {"torch-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
           "torch-sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}}


def subsets(data: str, n_train: int, n_query: int, seed: int):
    from deephash.data import load_source, make_split

    split = make_split(load_source(data, image_size=32), "dsh", seed)
    rng = np.random.default_rng(seed)  # random subsets: the archive's images are grouped by class
    train = split.train.subset(np.sort(rng.choice(len(split.train), n_train, replace=False)))
    query = split.query.subset(np.sort(rng.choice(len(split.query), n_query, replace=False)))
    return train, query


def outputs(model, images: np.ndarray, run, batch: int = 64) -> np.ndarray:
    """Relaxed codes (N, bits) float32 of uint8 (N, H, W, 3) images, resized as ``encode_dataset`` does."""
    import torch

    from deephash.data.base import resize_batch

    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float().div_(255.0)
            out.append(run(resize_batch(x, tuple(model.image_size))).float().numpy())
    return np.concatenate(out)


def runner(model, variant: str):
    from deephash.models import runtime as rt

    if variant.startswith("torch"):
        return lambda x: model.head(model.features(x))
    graph = rt.export(model)
    if variant == "onnxruntime":
        r = rt.OnnxRunner(graph)
    elif variant == "onnxruntime-noopt":
        import onnxruntime as ort

        r = rt.OnnxRunner(graph)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        r.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    elif variant == "openvino":
        r = rt.OpenVinoRunner(graph)
    else:
        raise SystemExit(f"unknown variant {variant}")
    return lambda x: r(x)[0]


def encode_variant(ckpt: str, variant: str, train, query) -> dict:
    from deephash.runs import load_trained

    model = load_trained(ckpt).model.eval()
    model.use_runtime(None)
    run = runner(model, variant)
    t = time.perf_counter()
    res = {"query": outputs(model, query.images, run), "database": outputs(model, train.images, run)}
    res["seconds"] = time.perf_counter() - t
    return res


def compare(ref: dict, got: dict, train, query, bits: int) -> dict:
    from deephash.codes import encode_outputs
    from deephash.evaluation import evaluate

    def m(q, db):
        k = min(1000, len(db))
        r = evaluate(encode_outputs(q), encode_outputs(db), query.labels, train.labels, bits=bits, topk=(k,),
                     progress=False)["metrics"]
        return r["mAP"]["tie_aware"], r[f"mAP@{k}"]["tie_aware"]

    a = np.concatenate([ref["query"], ref["database"]]) >= 0
    b = np.concatenate([got["query"], got["database"]]) >= 0
    diff = (a != b).sum(1)
    out_diff = np.abs(np.concatenate([ref["query"], ref["database"]]) - np.concatenate([got["query"], got["database"]]))
    own, mixed = m(got["query"], got["database"]), m(got["query"], ref["database"])
    return {"bits_equal": float((a == b).mean()), "codes_equal": float((diff == 0).mean()),
            "bits_differing": int(diff.sum()), "max_bits_one_code": int(diff.max()),
            "max_output_diff": float(out_diff.max()), "mAP": own[0], "mAP@1000": own[1],
            "mAP_q_vs_torch_db": mixed[0], "mAP@1000_q_vs_torch_db": mixed[1], "seconds": round(got["seconds"], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--checkpoint", help="a trained pooled model (default: train the best recipe on the subset)")
    ap.add_argument("--train", type=int, default=5000, help="training (= database) images")
    ap.add_argument("--query", type=int, default=1000, help="query images (test split)")
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/runtime_agreement")
    ap.add_argument("--variants", default="onnxruntime,onnxruntime-noopt,openvino,torch-avx2,torch-sse41")
    ap.add_argument("--only", help=argparse.SUPPRESS)   # child process: one variant's outputs into --save
    ap.add_argument("--save", help=argparse.SUPPRESS)
    a = ap.parse_args()
    train, query = subsets(a.data, a.train, a.query, a.seed)
    if a.only:
        np.savez(a.save, **encode_variant(a.checkpoint, a.only, train, query))
        return 0

    import torch

    ckpt = a.checkpoint
    if ckpt is None:
        from deephash.train import TrainConfig
        from deephash.train import train as fit

        recipe = {k: v for k, v in TrainConfig.read_yaml(ROOT / "configs/cifar10_best.yaml").items()}
        cfg = TrainConfig(**{**recipe, "data": a.data, "bits": a.bits, "epochs": a.epochs, "seed": a.seed,
                             "out": a.out})
        ckpt = str(fit(cfg, train, progress=False).checkpoint)
    results, ref = {}, encode_variant(ckpt, "torch", train, query)
    bits = ref["query"].shape[1]
    print(f"model {ckpt}, {bits} bits; CIFAR-10 dsh subset: {len(train)} database (= training) images, "
          f"{len(query)} queries (seed {a.seed}); torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})",
          flush=True)
    results["torch"] = compare(ref, ref, train, query, bits)
    y = np.abs(np.concatenate([ref["query"], ref["database"]]))
    margins = {f"{t:g}": int((y < t).sum()) for t in (1e-5, 1e-4, 1e-3, 1e-2)}
    print(f"PyTorch outputs: {y.size} ({len(y)} codes x {bits}); |output| below 1e-5 / 1e-4 / 1e-3 / 1e-2: "
          f"{' / '.join(map(str, margins.values()))}; median |output| {np.median(y):.3g}", flush=True)
    for v in a.variants.split(","):
        if v in ISA_ENV:
            save = Path(a.out) / f"{v}.npz"
            save.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, __file__, "--data", a.data, "--checkpoint", ckpt, "--train", str(a.train),
                            "--query", str(a.query), "--seed", str(a.seed), "--only", "torch", "--save", str(save)],
                           env={**os.environ, **ISA_ENV[v]}, check=True)
            got = dict(np.load(save))
            got["seconds"] = float(got["seconds"])
        else:
            try:
                got = encode_variant(ckpt, v, train, query)
            except ImportError as e:
                print(f"{v}: not installed ({e})")
                continue
        results[v] = compare(ref, got, train, query, bits)
    try:
        import onnxruntime
        versions = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        versions = ""
    print(f"| variant | bits equal | codes equal | bits differing | most in one code | max output diff | mAP | mAP@1000 "
          f"| mAP (query vs torch db) | seconds |  ({versions})")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v, r in results.items():
        print(f"| {v} | {100 * r['bits_equal']:.4f}% | {100 * r['codes_equal']:.2f}% | {r['bits_differing']} | "
              f"{r['max_bits_one_code']} | {r['max_output_diff']:.2e} | {r['mAP']:.4f} | {r['mAP@1000']:.4f} | "
              f"{r['mAP_q_vs_torch_db']:.4f} | {r['seconds']} |")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "agreement.json").write_text(json.dumps({"checkpoint": ckpt, "bits": bits, "margins": margins,
                                                           "results": results},
                                                          indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
