import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-dataset caches go to a per-session temp folder, never to the user's cache."""
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def make_cifar_batches(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """Files in the exact official CIFAR-10 python format, with few images."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, fh)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with open(d / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}, fh)
    return d


@pytest.fixture
def cifar_dir(tmp_path):
    return make_cifar_batches(tmp_path)


@pytest.fixture
def cifar_tar(tmp_path):
    d = make_cifar_batches(tmp_path / "src")
    out = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(d, arcname="cifar-10-batches-py")
    return out


def write_image_folder(root: Path, splits=("train", "test"), classes=("cat", "dog", "ship"), per_class=4,
                       size=(32, 32), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in classes:
            d = root / split / c if split else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.jpg" if i % 2 else d / f"{i:04d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "folder")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills once per test run, shared by every pytest-xdist worker: the first
    worker to ask builds it under a file lock, the others wait and read it. Its users only read it (a test that
    writes copies it first)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above the workers' own
    d, done = root / f"built-{name}", root / f"built-{name}.done"
    with FileLock(str(root / f"built-{name}.lock")):
        if not done.exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            build(d)
            done.touch()
    return d


@pytest.fixture(scope="session")
def served_indexes(tmp_path_factory):
    """Small indexes for the service tests, built through the CLI: a 16-bit DSH model on digits (2 epochs)
    indexing 54 digit PNG files, and a 32-bit IAH model indexing 24 images of coloured squares."""
    d = built_once(tmp_path_factory, "served", _build_served)
    return {"dsh": d / "dsh-index", "digits": d / "digits", "iah": d / "iah-index", "squares": d / "squares"}


def _build_served(d: Path) -> None:
    from test_iah_e2e import _yolo_squares
    from typer.testing import CliRunner

    from deephash.cli import app
    from deephash.data import load_split

    run = CliRunner().invoke
    sp = load_split("digits", "holdout", 0, 32, progress=False).query
    for i in range(60):
        folder = d / "digits" / sp.class_names[int(sp.labels[i].argmax())]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sp.image_u8(i)).save(folder / f"{i:03d}.png")
    r = run(app, ["train", "--data", "digits", "--bits", "16", "--epochs", "2", "--batch-size", "100",
                  "--optimizer", "adam", "--out", str(d / "dsh"), "-q"])
    assert r.exit_code == 0, r.output
    r = run(app, ["index", "build", "--checkpoint", str(d / "dsh" / "last.ckpt"), "--data", str(d / "digits"),
                  "--split", "database", "--out", str(d / "dsh-index"), "-q"])
    assert r.exit_code == 0, r.output
    squares = _yolo_squares(d / "squares", 24, 0)
    r = run(app, ["iah-train", "--data", str(squares), "--bits", "32", "--image-size", "48", "--epochs", "2",
                  "--batch-size", "12", "--top-n", "12", "--out", str(d / "iah"), "-q"])
    assert r.exit_code == 0, r.output
    r = run(app, ["index", "build", "--checkpoint", str(d / "iah" / "last.ckpt"), "--split", "train",
                  "--out", str(d / "iah-index"), "-q"])
    assert r.exit_code == 0, r.output
    assert squares == d / "squares"
