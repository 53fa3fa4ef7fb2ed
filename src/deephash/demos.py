"""The demos behind ``deephash demo`` and ``deephash iah-demo``: whole runs (train, encode, evaluate, draw)
as library calls, so the CLI only parses and prints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .codes import check_code_length
from .errors import InvalidInputError


def parse_bits(text: str) -> list[int]:
    """'12,24,32' → [12, 24, 32]."""
    try:
        values = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise InvalidInputError(f"--bits takes comma-separated integers, got {text!r}") from None
    return [check_code_length(b) for b in values]


@dataclass
class DSHDemo:
    """What ``dsh_demo`` measured: one row per code length and where it wrote its files."""

    described: str
    rows: list = field(default_factory=list)  # (bits, mAP stable, mAP tie-aware, mAP@K stable, P@H<=2, train s)
    topk: int = 1000
    queries_without_relevant: int = 0
    results_json: Path | None = None
    grid: Path | None = None
    grid_bits: int = 0

    def table(self, data: str) -> list[str]:
        k = self.topk
        lines = [f"DSH on {data} — {self.described}",
                 f"{'bits':>5} {'mAP@all':>9} {'mAP@all':>9} {f'mAP@{k}':>9} {'P@H<=2':>8} {'train s':>8}",
                 f"{'':>5} {'(stable)':>9} {'(tie-avg)':>9} {'(stable)':>9} {'':>8} {'':>8}"]
        lines += [f"{b:>5} {m1:>9.4f} {m2:>9.4f} {m3:>9.4f} {p2:>8.4f} {s:>8.1f}" for b, m1, m2, m3, p2, s in self.rows]
        lines.append("stable = ties at equal Hamming distance broken by database order; tie-avg = exact expectation "
                     "over all tie orders; queries with no relevant item excluded "
                     f"({self.queries_without_relevant} here); P@H<=2 counts an empty ball as 0.")
        return lines


def dsh_demo(data: str = "digits", bits: list[int] = (12, 24, 32, 48), epochs: int | None = None,
             protocol: str | None = None, model: str = "dsh", topk: int = 1000, out: str | Path = "runs/demo",
             seed: int = 0, progress: bool = True, log: Callable[[str], None] = lambda s: None) -> DSHDemo:
    """Train DSH at each code length, encode query and database, evaluate, write ``results.json`` and a result
    grid of the length closest to 32 bits. ``log`` receives one line per step."""
    from .codes import hamming_distances
    from .data import load_split
    from .evaluation import evaluate
    from .retrieval import Encoder
    from .train import TrainConfig, train
    from .viz import result_grid

    out = Path(out)
    n_epochs = epochs or (20 if data == "digits" else 3)
    split = load_split(data, protocol, seed, 32, progress=progress)
    log(f"data {data}: {split.describe()}; {n_epochs} epochs per code length")
    out.mkdir(parents=True, exist_ok=True)
    report = DSHDemo(split.describe(), topk=min(topk, len(split.database)))
    results, codes_by_bits = [], {}
    for b in bits:
        cfg = TrainConfig(data=data, protocol=split.protocol, seed=seed, model=model, bits=b, epochs=n_epochs,
                          optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="cosine", batch_size=100,
                          out=str(out / f"{b}bits"))
        t0 = time.perf_counter()
        trained = train(cfg, split.train, progress=progress)
        seconds = time.perf_counter() - t0
        encoder = Encoder(trained.checkpoint)
        q, _ = encoder.encode_split(data, "query", split.protocol, progress=progress)
        db, _ = encoder.encode_split(data, "database", split.protocol, progress=progress)
        q.save(out / f"{b}bits" / "query.npz")
        db.save(out / f"{b}bits" / "database.npz")
        codes_by_bits[b] = (q, db)
        r = evaluate(q.codes, db.codes, q.labels, db.labels, bits=b, topk=(topk,), protocol=split.protocol,
                     progress=False)
        r["train_seconds"] = round(seconds, 1)
        results.append(r)
        m = r["metrics"]
        report.rows.append((b, m["mAP"]["deterministic"], m["mAP"]["tie_aware"],
                            m[f"mAP@{report.topk}"]["deterministic"], m["P@H<=2"]["deterministic"], seconds))
        log(f"{b:>4} bits: mAP {m['mAP']['deterministic']:.4f} ({seconds:.0f} s)")
    report.queries_without_relevant = results[0]["n_queries_without_relevant"]
    report.results_json = out / "results.json"
    report.results_json.write_text(json.dumps({"split": split.sizes(), "data": data, "results": results}, indent=2))
    report.grid_bits = min(bits, key=lambda b: abs(b - 32))
    q, db = codes_by_bits[report.grid_bits]
    pick = np.random.default_rng(seed).choice(len(q), size=min(8, len(q)), replace=False)
    dist = hamming_distances(q.codes[pick], db.codes)
    top = np.argsort(dist, axis=1, kind="stable")[:, :10]
    relevant = (q.labels[pick] @ db.labels.T > 0)[np.arange(len(pick))[:, None], top]
    report.grid = result_grid(
        [split.query.image_u8(int(i)) for i in pick], [[split.database.image_u8(int(j)) for j in row] for row in top],
        out / "grid.png", distances=np.take_along_axis(dist, top, 1), relevant=relevant,
        row_titles=[f"query {int(i)} ({', '.join(n for n, v in zip(q.class_names, q.labels[i]) if v)})" for i in pick])
    return report


@dataclass
class IAHDemo:
    """What ``iah_demo`` measured and wrote."""

    train_images: int
    query_images: int
    train_seconds: float
    semantic_map: float
    semantic_ndcg100: float
    index: Path
    grid: Path


def iah_demo(data: str | Path, bits: int = 32, epochs: int | None = None, image_size: int = 160,
             lr: float | None = None, proposals: str = "selective", backbone: str = "efficientnet_lite0",
             weights: str | None = "auto", queries: int = 4, frozen_backbone: bool | None = None,
             out: str | Path = "runs/iah-demo", seed: int = 0, progress: bool = True,
             log: Callable[[str], None] = lambda s: None) -> IAHDemo:
    """IAH end to end on a multi-label dataset with boxes (coco128): train on its first split, index it (semantic
    and category-aware codes), score the semantic codes of the second split's labelled images against it, and
    draw a category-mode result grid with the proposal boxes. ``weights="auto"``: the installed ImageNet weights
    for efficientnet_lite0, none for other backbones; a pretrained backbone is kept frozen unless told not to."""
    from .data import load_box_source, load_image
    from .evaluation import evaluate
    from .retrieval import ImageIndex
    from .retrieval.grid import draw_results
    from .train import TrainConfig, train

    out = Path(out)
    splits = load_box_source(data, image_size)
    names = list(splits)
    train_set = splits[names[0]]
    query_set = splits[names[1]] if len(names) > 1 else train_set
    query_set = query_set.subset([i for i in range(len(query_set)) if query_set.labels[i].any()])
    if weights == "auto":
        weights = "imagenet" if backbone == "efficientnet_lite0" else None
    weights = None if weights in (None, "none") else weights
    if frozen_backbone is None:
        frozen_backbone = weights is not None
    # Heads on stored ImageNet feature maps train fast, so they get more epochs (docs/iah.md: on coco128
    # semantic mAP 0.7055 frozen with 40 epochs vs 0.6645 fine-tuned with 8, in half the time).
    epochs = (40 if frozen_backbone else 8) if epochs is None else epochs
    lr = (3e-3 if frozen_backbone else 1e-3) if lr is None else lr
    cfg = TrainConfig(method="iah", data=str(data), model=backbone, weights=weights, bits=bits, image_size=image_size,
                      epochs=epochs, batch_size=32, lr=lr, frozen_backbone=frozen_backbone, seed=seed,
                      out=str(out / "model"), method_options={"proposals": proposals})
    res = train(cfg, train_set, progress=progress)
    log(f"trained IAH ({bits} bits, {proposals} proposals) on {len(train_set)} images in {res.seconds:.0f} s")
    index = ImageIndex.build(res.checkpoint, train_set, progress=progress)
    index.save(out / "index")
    q = index.encoder.encode_dataset(query_set)
    db = index.get_codes(np.arange(len(train_set)))  # ids are the training set's positions
    m = evaluate(q.codes, db, query_set.labels[q.indices], train_set.labels, bits=bits, topk=(100,), ndcg_k=(100,),
                 progress=False)["metrics"]
    images = [Path(p) for p in query_set.paths[:queries]]
    results = index.search(images=images, k=5, mode="category")
    grid = draw_results(out / "category_grid.png", results, [load_image(p) for p in images], index, limit=12)
    return IAHDemo(len(train_set), len(query_set), res.seconds, m["mAP"]["deterministic"],
                   m["NDCG@100"]["deterministic"], out / "index", grid)
