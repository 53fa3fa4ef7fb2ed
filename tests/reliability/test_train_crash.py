"""SIGKILL at random points of ``deephash train``: afterwards there is no checkpoint or a valid one, and
``deephash train --resume`` ends with exactly the weights of an uninterrupted run.

Each run is a real process killed with SIGKILL. To keep 20+ kills within seconds, the runs are forked from
one server process that has already imported deephash and torch (an interpreter start costs seconds here);
the server itself never computes, so each forked child starts like a fresh ``deephash train``
(``forkserver.py``)."""

import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.runs.checkpoint import load_checkpoint

from forkserver import ForkServer

EPOCHS = 6

def state_hash(ckpt_path: Path) -> str:
    h = hashlib.sha256()
    for k, v in sorted(load_checkpoint(ckpt_path)["model"].items()):
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for i in range(20):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


# a few kills in the default suite; the full loop with the slow tests (.ci/run runs both)
@pytest.mark.parametrize("kills", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_sigkill_during_training_then_resume_is_exact(tmp_path, kills):
    data = tiny_folder(tmp_path / "data")
    runner = ForkServer(tmp_path, preload=("torch", "deephash.train", "deephash.methods", "deephash.data"),
                        env={"DEEPHASH_CACHE": str(tmp_path / "cache")})  # kills land in training, not imports

    def argv(out):
        return ["train", "--data", data, "--out", out, "--bits", "8", "--epochs", EPOCHS, "--batch-size", 20,
                "--threads", 1, "-q"]

    def run(args, log):
        res = runner.wait(runner.spawn(args, log=log)[0])
        assert not res["killed"] and res["code"] == 0, Path(log).read_text()[-3000:]

    try:
        run(argv(tmp_path / "warm"), tmp_path / "warm.log")  # fills the decoded-data cache
        t0 = time.perf_counter()
        run(argv(tmp_path / "ref"), tmp_path / "ref.log")
        duration = time.perf_counter() - t0
        want = state_hash(tmp_path / "ref" / "last.ckpt")
        rng = random.Random(1616)
        outcomes = {"no checkpoint": 0, "valid checkpoint": 0}
        epochs_found, attempts, leftovers = [], 0, 0
        while sum(outcomes.values()) < kills:
            attempts += 1
            assert attempts <= 3 * kills, f"too few kills landed within a run: {outcomes}"
            out, log = tmp_path / f"k{attempts}", tmp_path / f"k{attempts}.log"
            pid, _ = runner.spawn(argv(out), log=log)
            time.sleep(rng.uniform(0, duration))
            runner.kill(pid)
            if not runner.wait(pid)["killed"]:
                continue  # it finished before the kill: not a crash
            ckpt = out / "last.ckpt"
            left = {p.name for p in out.iterdir()} - {"last.ckpt", "train.json"} if out.exists() else set()
            assert all(n.startswith((".last.ckpt.", ".train.json.")) and n.endswith(".tmp") for n in left), left
            leftovers += len(left)  # a write cut short leaves its temp file; it is never read
            if ckpt.exists():
                epochs_found.append(load_checkpoint(ckpt)["epoch"])  # valid, or this raises
                outcomes["valid checkpoint"] += 1
                run(["train", "--resume", out, "-q"], log)
            else:
                outcomes["no checkpoint"] += 1
                run(argv(out), log)
            assert state_hash(ckpt) == want, (attempts, outcomes)
            assert len(json.loads((out / "train.json").read_text())) > 0
        print(f"crash test: {kills} kills in {attempts} runs, {outcomes}, checkpoint epochs {sorted(epochs_found)}, "
              f"{leftovers} temp files left")
        if kills >= 10:  # enough random kill points that some land after the first checkpoint
            assert outcomes["valid checkpoint"] > 0
    finally:
        runner.close()
