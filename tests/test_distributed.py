"""Distributed training and sharded encoding (torch.distributed, gloo, 2 CPU processes) against one process:
a 2-rank step gives the single-process loss and gradients (DSH pairs with crops and mirrors, a frozen backbone's
sharded feature store, IAH's BCE and triplets on a frozen backbone), a 2-rank run reaches the single-process mAP, a sharded encode merges to the
single-process codes file byte for byte, and a resume with another world size is refused.

The ranks run once per module (torch.multiprocessing spawn, one thread each) and save what they computed."""

import functools
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

from deephash import DeephashError
from deephash.cli import app
from deephash.codes import CodesFile, merge_shards
from deephash.data import generate_multiobject, load_source, make_split
from deephash.distributed import batch_counts, shard_range
from deephash.evaluation import mean_average_precision
from deephash.retrieval import Encoder
from deephash.runs.checkpoint import load_checkpoint
from deephash.train import TrainConfig, Trainer, train
from deephash.train.trainer import epoch_generator

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def digits_split():
    return make_split(load_source("digits"), "holdout", seed=0)


def run_cfg(out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(bits=16, epochs=3, batch_size=100, threads=1, out=str(out)), **kw})


def short_run(out, interrupt: bool) -> str:
    """A 3-epoch run on 800 training images; with ``interrupt`` stopped after one epoch and resumed."""
    data = digits_split().train.subset(np.arange(800))
    if interrupt:
        first = Trainer(run_cfg(out), data, progress=False)
        first.epochs = 1
        first.fit()
    return str(train(run_cfg(out), data, resume=out / "last.ckpt" if interrupt else None, progress=False).checkpoint)


def step(cfg: TrainConfig, data, idx) -> dict:
    """The loss terms and every parameter gradient of one step on the global batch ``idx``."""
    trainer = Trainer(cfg, data, progress=False)
    for m in trainer.model.modules():  # dropout masks are drawn per rank: compared without them
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    if cfg.frozen_backbone:
        trainer.features = trainer.method.frozen_store(trainer.model, trainer.data.images, False)
    values = trainer.backward(np.asarray(idx), epoch_generator(cfg.seed, 0))
    grads = {k: p.grad.clone() for k, p in trainer.model.named_parameters() if p.grad is not None}
    return {"values": values, "grads": grads}


def scenarios(out) -> dict:
    """What one process and each rank compute: the same code, the world size being the only difference."""
    split = digits_split()
    small = split.train.subset(np.arange(120))
    idx = np.random.default_rng(0).permutation(120)[:41]  # 41: the ranks take 20 and 21
    src = load_source("digits")["all"].subset(np.arange(300)).as_arrays()
    boxes = generate_multiobject(src, 40, canvas=48, max_objects=2, seed=0, progress=False)
    r = {
        "dsh": step(run_cfg(out / "u", batch_size=41, crop_pad=2), small, idx),
        "frozen": step(run_cfg(out / "u", batch_size=41, frozen_backbone=True, model_kwargs={"hidden": 32}),
                       small, idx),
        # IAH's default map backbone has batch norm, whose batch statistics are per rank on CPU (no SyncBatchNorm
        # there): frozen, it runs once in eval mode (its feature maps computed sharded)
        "iah": step(TrainConfig(method="iah", bits=16, image_size=48, batch_size=20, threads=1, out=str(out / "u"),
                                frozen_backbone=True, method_options={"max_triplets": 500}), boxes, np.arange(3, 23)),
    }
    r["checkpoint"] = short_run(out / "run", interrupt=dist.is_initialized())
    return r


def _rank(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), DEEPHASH_CACHE=str(out / "cache"))  # features computed, sharded
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        r = scenarios(out)
        db, _ = Encoder(r["checkpoint"], batch_size=128).encode_split("digits", "database", "holdout",
                                                                      shard=(rank, WORLD))
        shards = [None] * WORLD
        dist.all_gather_object(shards, db)
        r["merged"] = merge_shards(shards)
        try:
            Trainer(run_cfg(out / "x"), digits_split().train, progress=False).resume(out / "single" / "run")
        except DeephashError as e:
            r["refused"] = str(e)
        torch.save(r, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    single = scenarios(out / "single")
    mp.spawn(_rank, args=(free_port(), out), nprocs=WORLD, join=True)
    return single, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


@pytest.mark.parametrize("case", ["dsh", "frozen", "iah"])
def test_two_rank_step_equals_one_process(runs, case):
    single, ranks, _ = runs
    ref = single[case]
    assert ref["grads"] and (case != "frozen" or "backbone.conv.0.weight" not in ref["grads"])
    for got in (r[case] for r in ranks):
        assert got["values"].keys() == ref["values"].keys()
        for k, v in ref["values"].items():
            assert got["values"][k] == pytest.approx(v, abs=1e-5, rel=1e-5), k
        assert got["grads"].keys() == ref["grads"].keys()
        for k, g in ref["grads"].items():
            torch.testing.assert_close(got["grads"][k], g, rtol=1e-5, atol=1e-5, msg=k)


def test_two_rank_run_reaches_the_single_process_map(runs):
    single, ranks, out = runs
    maps = []
    for ckpt in (single["checkpoint"], ranks[0]["checkpoint"]):
        enc = Encoder(ckpt)
        q, db = (enc.encode_split("digits", s, "holdout")[0] for s in ("query", "database"))
        maps.append(mean_average_precision(q.codes, db.codes, q.labels, db.labels)["deterministic"])
    assert maps[0] > 0.5 and abs(maps[1] - maps[0]) < 0.02, maps
    ckpt = load_checkpoint(ranks[0]["checkpoint"])  # interrupted after one epoch and resumed by the same 2 ranks
    assert (ckpt["world_size"], ckpt["step"], len(ckpt["history"]), len(ckpt["rank_rngs"])) == (2, 24, 3, 2)


def test_sharded_encode_merges_to_the_bytes_of_one_process(runs, tmp_path):
    _, ranks, out = runs
    whole, _ = Encoder(ranks[0]["checkpoint"], batch_size=128).encode_split("digits", "database", "holdout")
    whole.save(tmp_path / "whole.npz")
    ranks[0]["merged"].save(tmp_path / "merged.npz")
    assert (tmp_path / "merged.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    # the same through the CLI: two --shard runs (3 shards of 1617 rows in batches of 500) and merge-codes
    cli = CliRunner()
    for i in (2, 0, 1):
        res = cli.invoke(app, ["encode", ranks[0]["checkpoint"], "--split", "database", "--batch-size", "500",
                               "--shard", f"{i}/3", "--out", str(tmp_path / f"s{i}.npz"), "-q"])
        assert res.exit_code == 0, res.output
    assert CodesFile.load(tmp_path / "s2.npz").shard["rows"] == [1000, 1617]
    shards = [str(tmp_path / f"s{i}.npz") for i in (1, 2, 0)]
    res = cli.invoke(app, ["merge-codes", str(tmp_path / "cli.npz"), *shards])
    assert res.exit_code == 0 and "1617 16-bit codes from 3 shards" in res.output, res.output
    res = cli.invoke(app, ["encode", ranks[0]["checkpoint"], "--split", "database", "--batch-size", "500",
                           "--out", str(tmp_path / "one.npz"), "-q"])
    assert (tmp_path / "cli.npz").read_bytes() == (tmp_path / "one.npz").read_bytes()
    res = cli.invoke(app, ["merge-codes", str(tmp_path / "bad.npz"), *shards[:2]])
    assert res.exit_code == 2 and "missing [0]" in res.output
    res = cli.invoke(app, ["merge-codes", str(tmp_path / "bad.npz"), shards[0], str(tmp_path / "one.npz")])
    assert res.exit_code == 2 and "one.npz is not a shard" in res.output
    res = cli.invoke(app, ["encode", ranks[0]["checkpoint"], "--shard", "3/3", "--out", str(tmp_path / "x.npz")])
    assert res.exit_code == 2 and "--shard expects I/N with 0 <= I < N" in res.output


def test_resume_with_another_world_size_is_refused(runs):
    single, ranks, out = runs
    assert "trained by 1 process(es) (torchrun world size 1) but this run has 2" in ranks[0]["refused"]
    with pytest.raises(DeephashError, match="trained by 2 process.*but this run has 1"):
        Trainer(run_cfg(out / "y"), digits_split().train, progress=False).resume(ranks[0]["checkpoint"])



@pytest.mark.parametrize("n,count,align", [(1617, 3, 500), (41, 2, 1), (10, 4, 4), (3, 5, 1), (0, 2, 8)])
def test_shards_are_contiguous_whole_batches_covering_every_row(n, count, align):
    bounds = [shard_range(n, i, count, align) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(lo % align == 0 and lo <= hi for lo, hi in bounds)
    sizes = [-(-(hi - lo) // align) for lo, hi in bounds]  # batches per shard differ by at most one
    assert max(sizes) - min(sizes) <= 1
    assert sum(batch_counts(n, count)) == n
    with pytest.raises(DeephashError, match=f"shard {count} of {count} does not exist"):
        shard_range(n, count, count)

@pytest.mark.slow
def test_the_readme_torchrun_commands(tmp_path):
    """README: a 2-process train and encode from the command line; the merged codes equal a 1-process encode."""
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "deephash"]
    run = str(tmp_path / "run")
    for cmd in ([*torchrun, "train", "--data", "digits", "--bits", "16", "--epochs", "2", "--threads", "1",
                 "--out", run, "-q"],
                [*torchrun, "encode", run, "--out", str(tmp_path / "two.npz"), "-q"],
                [sys.executable, "-m", "deephash", "encode", run, "--out", str(tmp_path / "one.npz"), "-q"]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
    assert load_checkpoint(run)["world_size"] == 2
    assert (tmp_path / "two.npz").read_bytes() == (tmp_path / "one.npz").read_bytes()
