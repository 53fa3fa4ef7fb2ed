"""The commands end to end on tiny data, through the entry point ``deephash.cli.main`` (in-process,
so torch is imported once), plus one real ``python -m deephash`` subprocess."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deephash.codes import CodesFile


def run(*args, cwd=None):
    """Run ``deephash ARGS`` as the console script does; returns (exit code, stdout, stderr)."""
    from deephash.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def test_console_entry_point_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "deephash", "train", "--data", tmp_path / "missing"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: dataset not found") and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "deephash", "version"], capture_output=True, text=True, timeout=300)
    from deephash import __version__

    assert p.returncode == 0 and p.stdout == f"{__version__}\n" and p.stderr == ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    code, out, err = run("train", "--data", "digits", "--bits", "12", "--epochs", "1", "--batch-size", "100",
                         "--out", d / "run", "-q", cwd=d)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["bits"] == 12 and summary["train"] == 1617 and summary["protocol"] == "holdout"
    return d


def test_encode_search_evaluate_on_dataset_splits(trained):
    d = trained
    for split in ("query", "database"):
        code, out, err = run("encode", d / "run", "--split", split, "--out", d / f"{split}.npz", "-q")
        assert code == 0, err
    q, db = CodesFile.load(d / "query.npz"), CodesFile.load(d / "database.npz")
    assert len(q) == 180 and len(db) == 1617 and q.bits == 12 and q.codes.shape == (180, 2)
    assert q.meta["split"] == "query" and q.labels.shape == (180, 10)
    code, out, err = run("search", "--database", d / "database.npz", "--query", d / "query.npz", "-k", "5",
                         "--json", "--grid", d / "grid.png")
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert len(lines) == 180 and all(len(x["results"]) == 5 for x in lines)
    dists = [r["distance"] for r in lines[0]["results"]]
    assert dists == sorted(dists)
    assert Image.open(d / "grid.png").size[0] > 300
    code, out, err = run("evaluate", "--query", d / "query.npz", "--database", d / "database.npz", "--topk", "100",
                         "--out", d / "report")
    assert code == 0, err
    assert "mAP" in out and "database position" in out
    report = json.loads((d / "report" / "report.json").read_text())
    from deephash.evaluation import evaluate

    want = evaluate(q.codes, db.codes, q.labels, db.labels, bits=12, topk=(100,), protocol=q.meta.get("protocol"))
    assert report == [json.loads(json.dumps(want))] and report[0]["metrics"]["mAP"] == want["metrics"]["mAP"]
    assert (d / "report" / "pr_curve.png").exists()


def test_encode_folder_skips_and_counts_bad_images(trained, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(folder / "big.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA").save(folder / "sub" / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 60000, (16, 16))).astype(np.uint16)).save(folder / "deep.tiff")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = run("encode", trained / "run", "--images", folder, "--out", tmp_path / "c.npz", "-q")
    assert code == 0, err
    assert "skipped 1 unreadable images" in out and "broken.jpg" in err
    cf = CodesFile.load(tmp_path / "c.npz")
    assert len(cf) == 5 and not any(p.endswith("broken.jpg") for p in cf.paths)
    code, out, err = run("search", "--database", trained / "database.npz", "--image", folder / "big.jpg",
                         "--checkpoint", trained / "run", "-k", "3")
    assert code == 0, err
    assert out.count(" d=") == 3


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "/no/such/dataset"], "dataset not found"),
    (["train", "--bits", "2000"], "code length must be between 1 and 1024"),
    (["train", "--optimizer", "rmsprop"], "optimizer must be one of"),
    (["train", "--crop-pad", "40"], "crop_pad must be between 0 and image_size - 1"),
    (["encode", "/no/such.ckpt", "--out", "x.npz"], "checkpoint not found"),
    (["search", "--database", "/no/such.npz", "--query", "/no/q.npz"], "codes file not found"),
    (["demo", "--bits", "12,x"], "--bits takes comma-separated integers"),
])
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    code, out, err = run(*args, cwd=tmp_path)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_cli_resume_uses_the_checkpoint_settings(trained, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained / "run", run_dir)
    code, out, err = run("train", "--resume", run_dir, "--epochs", "1", "-q", cwd=tmp_path)
    assert code == 0, err  # same settings as recorded: nothing conflicts
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["bits"] == 12 and summary["checkpoint"].startswith(str(run_dir))
    assert not (tmp_path / "runs").exists()          # wrote into the resumed run, not a default folder
    code, _, err = run("train", "--resume", run_dir, "--lr", "0.5", "-q", cwd=tmp_path)
    assert code == 2 and "lr: checkpoint 0.001, now 0.5" in err


def test_cli_resume_reads_the_checkpoint_once(trained, tmp_path, monkeypatch):
    """``train --resume`` opens one ``deephash.runs.Run``: its config, the resume checks and the restored state
    all come from a single read and sha256 check of the file."""
    import shutil

    from deephash.runs import checkpoint

    reads = []
    check = checkpoint.check_payload  # runs once per verified read, whoever reads
    monkeypatch.setattr(checkpoint, "check_payload", lambda payload, path: reads.append(path) or check(payload, path))
    run_dir = tmp_path / "copy"
    shutil.copytree(trained / "run", run_dir)
    code, _, err = run("train", "--resume", run_dir, "--epochs", "1", "-q", cwd=tmp_path)
    assert code == 0, err
    assert reads == [run_dir / "last.ckpt"]


def test_mixed_code_lengths_are_refused(trained, tmp_path):
    from deephash.codes import pack_bits

    rng = np.random.default_rng(0)
    labels = np.eye(10, dtype=np.uint8)[rng.integers(0, 10, 5)]
    CodesFile(pack_bits(rng.integers(0, 2, (5, 16))), 16, labels=labels,
              class_names=[str(i) for i in range(10)]).save(tmp_path / "q16.npz")
    code, _, err = run("evaluate", "--query", tmp_path / "q16.npz", "--database", trained / "database.npz")
    assert code == 2 and "holds 16-bit codes but" in err and "holds 12-bit codes" in err
    code, _, err = run("index", "build", "--codes", trained / "database.npz", "--out", tmp_path / "idx")
    assert code == 0, err
    code, _, err = run("index", "add", "--index", tmp_path / "idx", "--codes", tmp_path / "q16.npz")
    assert code == 2 and "holds 16-bit codes but the index holds 12-bit codes" in err
    np.save(tmp_path / "raw.npy", np.zeros((3, 2), np.uint8))
    code, _, err = run("search", "--database", trained / "database.npz", "--query", tmp_path / "raw.npy")
    assert code == 2 and "bare array" in err and "Traceback" not in err


def test_resume_with_other_bit_length_and_corrupt_checkpoint(trained, tmp_path):
    code, _, err = run("train", "--bits", "24", "--epochs", "1", "--out", tmp_path / "r", "--resume",
                       trained / "run", "-q")
    assert code == 2 and "12-bit model but this run is configured for 24 bits" in err
    data = (trained / "run" / "last.ckpt").read_bytes()
    (tmp_path / "bad.ckpt").write_bytes(data[: len(data) // 2])
    code, _, err = run("encode", tmp_path / "bad.ckpt", "--out", tmp_path / "x.npz")
    assert code == 2 and "corrupt or truncated" in err


def test_search_width_mismatch(trained, tmp_path):
    CodesFile(np.zeros((2, 4), np.uint8), 32).save(tmp_path / "q32.npz")
    code, _, err = run("search", "--database", trained / "database.npz", "--query", tmp_path / "q32.npz")
    assert code == 2 and "query codes have 32 bits but the database has 12" in err


def test_demo_end_to_end(tmp_path):
    code, out, err = run("demo", "--bits", "16", "--epochs", "2", "--out", tmp_path / "demo", "-q")
    assert code == 0, err
    assert "mAP@all" in out and "ties at equal Hamming distance broken by database order" in out
    res = json.loads((tmp_path / "demo" / "results.json").read_text())
    m = res["results"][0]["metrics"]["mAP"]
    assert 0.3 < m["deterministic"] <= 1 and 0.3 < m["tie_aware"] <= 1
    assert (tmp_path / "demo" / "grid.png").stat().st_size > 1000
