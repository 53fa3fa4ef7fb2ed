"""Glue used by the CLI and the demo: data spec → split → train → codes for query and database."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import CodesFile
from ..data import HashDataset, Split, load_source, make_split
from ..encode import encode_dataset
from ..errors import DeephashError
from ..models import HashingModel
from .config import TrainConfig

SPLITS = ("train", "query", "database")


def load_split(data: str, protocol: str | None, seed: int, image_size: int | None = None,
               progress: bool = True) -> Split:
    splits = load_source(data, image_size=image_size, progress=progress)
    return make_split(splits, protocol, seed)


def split_for_config(cfg: TrainConfig | dict, progress: bool = True) -> Split:
    c = cfg if isinstance(cfg, dict) else cfg.to_dict()
    return load_split(c["data"], c["protocol"], c["seed"], TrainConfig.stored_size(c), progress)


def codes_for(model: HashingModel, dataset: HashDataset, meta: dict, progress: bool = True,
              workers: int = 0) -> tuple[CodesFile, list]:
    res = encode_dataset(model, dataset, progress=progress, workers=workers)
    paths = [dataset.paths[i] for i in res.indices] if dataset.paths is not None else None
    cf = CodesFile(res.codes, model.bits, ids=res.indices, paths=paths, labels=dataset.labels[res.indices],
                   class_names=dataset.class_names, meta=meta)
    return cf, res.failures


def subset_of(split: Split, name: str) -> HashDataset:
    if name not in SPLITS:
        raise DeephashError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
    return getattr(split, name)


def images_for(codes: CodesFile, ids: np.ndarray, cache: dict | None = None) -> list[np.ndarray]:
    """Pixels for given ids of a codes file: from its image paths when they are files, else by
    reloading the dataset split recorded in its metadata."""
    from ..data import load_image

    if codes.paths is not None:
        pos = {int(i): k for k, i in enumerate(codes.ids)}
        paths = [codes.paths[pos[int(i)]] for i in ids]
        if all(Path(p).is_file() for p in paths):
            return [load_image(p) for p in paths]
    m = codes.meta
    if not {"data", "split"} <= m.keys():
        raise DeephashError("the codes file records neither image files nor its dataset; cannot draw images")
    key = (m["data"], m.get("protocol"), m.get("seed", 0), m.get("image_size"), m["split"])
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = subset_of(load_split(m["data"], m.get("protocol"), m.get("seed", 0), m.get("image_size"),
                                          progress=False), m["split"])
    ds = cache[key]
    return [ds.image_u8(int(i)) for i in ids]
