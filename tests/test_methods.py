"""The method plug-ins on the one training engine: registry, config, the engine against a textbook DSH loop,
repeatable IAH runs, exact IAH resume, old checkpoint formats, load_trained/encode."""

import hashlib

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.data import generate_multiobject, load_source, make_split
from deephash.runs import (
    Encoded,
    Method,
    encode,
    get_method,
    list_methods,
    load_checkpoint,
    load_trained,
    model_from_checkpoint,
    register_method,
    save_checkpoint,
)
from deephash.train import TrainConfig, Trainer, train


def state_hash(model) -> str:
    h = hashlib.sha256()
    for k, t in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def losses(history, keys):
    return [[h[k] for k in keys] for h in history]


@pytest.fixture(scope="module")
def multi():
    src = load_source("digits")["all"].subset(np.arange(300)).as_arrays()
    return generate_multiobject(src, 40, canvas=48, max_objects=2, seed=0, progress=False)


def iah_cfg(tmp_path, **kw):
    return TrainConfig(**{**dict(method="iah", bits=16, image_size=48, epochs=2, batch_size=20, threads=1,
                                 out=str(tmp_path / "iah")), **kw})


def test_registry():
    assert {"dsh", "iah"} <= set(list_methods())
    assert get_method("iah").name == "iah"
    with pytest.raises(DeephashError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(DeephashError, match="already registered"):
        register_method(type("Again", (Method,), {"name": "dsh"}))
    with pytest.raises(DeephashError, match="unknown method"):
        TrainConfig(method="nope")


def test_method_defaults_and_options(tmp_path):
    dsh, iah = TrainConfig(), TrainConfig(method="iah")
    assert (dsh.optimizer, dsh.lr, dsh.weight_decay, dsh.schedule, dsh.bits, dsh.batch_size, dsh.out) == \
        ("sgd", 1e-3, 0.004, "step", 48, 200, "runs/dsh")
    assert (iah.optimizer, iah.lr, iah.weight_decay, iah.schedule, iah.bits, iah.image_size, iah.epochs,
            iah.batch_size, iah.alpha, iah.out) == ("adamw", 3e-3, 1e-4, "cosine", 32, 64, 10, 64, 0.0, "runs/iah")
    assert TrainConfig(method="iah", lr=1e-3).lr == 1e-3  # a value given equal to dsh's default stays
    assert iah.method_options["proposals"] == "grid" and iah.method_options["top_n"] == 24
    assert TrainConfig(method="iah", method_options={"top_n": 8}).method_options["top_n"] == 8
    with pytest.raises(DeephashError, match="unknown iah method option.*: topn"):
        TrainConfig.from_dict({"method": "iah", "method_options": {"topn": 8}})
    with pytest.raises(DeephashError, match="unknown dsh method option"):
        TrainConfig(method_options={"top_n": 8})
    (tmp_path / "c.yaml").write_text("method: iah\nbits: 16\nmethod_options:\n  proposals: gt\n  hidden: 64\n")
    c = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert (c.method, c.bits, c.method_options["proposals"], c.method_options["hidden"]) == ("iah", 16, "gt", 64)
    (tmp_path / "bad.yaml").write_text("method: iah\nmethod_options: {pooling: align, nms: 3}\n")
    with pytest.raises(DeephashError, match="nms"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    for bad, msg in [(dict(crop_pad=2), "crop"), (dict(method_options={"proposals": "x"}), "proposals"),
                     (dict(batch_size=2), "batch_size"), (dict(model_kwargs={"hidden": 3}), "hidden"),
                     (dict(device="tpu"), "device")]:
        with pytest.raises(DeephashError, match=msg):
            TrainConfig(method="iah", **bad).validate()


@pytest.mark.parametrize("optimizer,schedule", [("adam", "cosine"), ("sgd", "step")])
def test_dsh_engine_equals_a_textbook_loop(tmp_path, optimizer, schedule):
    """The engine trains DSH exactly as the plain loop in the paper's terms does, both run here and now (pins of
    one CPU's float bits would fail on another CPU): the same initial weights, batches, mirror draws, cosine LR,
    Adam steps and DSH loss give the same weights and per-epoch losses, up to float rounding."""
    import math

    from deephash.data.augment import mirror_mask, to_float
    from deephash.data.samplers import epoch_batches
    from deephash.losses import DSHLoss
    from deephash.train.trainer import epoch_generator

    split = make_split(load_source("digits"), "holdout", 0)
    cfg = TrainConfig(bits=12, epochs=2, batch_size=100, optimizer=optimizer, schedule=schedule, threads=1,
                      milestones=[0.5], lr=1e-3 if optimizer == "adam" else 1e-2, out=str(tmp_path / "dsh"))
    res = train(cfg, split.train, progress=False)

    method = get_method("dsh")(cfg)
    data = method.arrays(split.train, progress=False)
    torch.manual_seed(cfg.seed)
    model = method.build_model(data.num_classes)
    method.setup(model, data)
    model.train()
    groups = model.parameter_groups(cfg.lr, cfg.weight_decay, cfg.bias_lr_mult, cfg.hash_lr_mult)
    opt = (torch.optim.Adam(groups, lr=cfg.lr) if optimizer == "adam"
           else torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum))  # SGD sees a loss scaled by mistake
    base = [g["lr"] for g in opt.param_groups]
    loss_fn = DSHLoss(cfg.bits, cfg.margin, cfg.alpha)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.float32))
    batches = [epoch_batches(len(data), cfg.batch_size, cfg.seed, e) for e in range(cfg.epochs)]
    total, step, history = sum(map(len, batches)), 0, []
    for epoch in range(cfg.epochs):
        gen, epoch_losses = epoch_generator(cfg.seed, epoch), []
        for idx in batches[epoch]:
            for g, lr in zip(opt.param_groups, base):
                t = step / total
                g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine"
                                else cfg.gamma ** sum(t >= m for m in cfg.milestones))
            x = to_float(images[torch.from_numpy(idx)])
            mirror_mask(x, gen, len(idx), 0)  # flips the drawn half in place
            loss = loss_fn(model(x), labels[torch.from_numpy(idx)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            epoch_losses.append(loss.item())
        history.append(sum(epoch_losses) / len(epoch_losses))

    np.testing.assert_allclose([h["loss"] for h in res.history], history, rtol=1e-4)
    for (k, a), (_, b) in zip(res.model.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert history[1] < history[0]


@pytest.mark.parametrize("frozen", [False, True])
def test_iah_trains_the_same_run_twice_and_learns(tmp_path, multi, frozen):
    """Two identical IAH runs on one machine give the same weights and losses (nothing depends on the clock, the
    thread schedule or a global RNG left behind by earlier code), and its objective falls."""
    cfg = iah_cfg(tmp_path / "a", frozen_backbone=frozen, epochs=3)
    a = train(cfg, multi, progress=False)
    torch.manual_seed(12345)  # a different global RNG state before the second run: the run seeds its own
    b = train(iah_cfg(tmp_path / "b", frozen_backbone=frozen, epochs=3), multi, progress=False)
    keys = ("loss", "bce", "semantic", "category")
    assert losses(a.history, keys) == losses(b.history, keys)
    assert state_hash(a.model) == state_hash(b.model)
    assert all(np.isfinite(v) for row in losses(a.history, keys) for v in row)
    assert a.history[-1]["bce"] < a.history[0]["bce"]
    assert a.history[-1]["loss"] < a.history[0]["loss"]


@pytest.mark.parametrize("frozen", [False, True])
def test_iah_resumes_exactly(tmp_path, multi, frozen):
    # few triplets: the miners sample, so their generators must resume too (as must dropout's torch RNG)
    kw = dict(frozen_backbone=frozen, method_options={"max_triplets": 30, "graded_category": True})
    straight = train(iah_cfg(tmp_path / "a", **kw), multi, progress=False)
    first = Trainer(iah_cfg(tmp_path / "b", **kw), multi, progress=False)
    first.epochs = 1
    first.fit()
    resumed = train(iah_cfg(tmp_path / "b", **kw), multi, resume=tmp_path / "b" / "iah", progress=False)
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    drop = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed.history] == \
        [{k: v for k, v in h.items() if k not in drop} for h in straight.history]
    with pytest.raises(DeephashError, match="method 'iah', this run is 'dsh'"):
        train(TrainConfig(bits=16, epochs=1, out=str(tmp_path / "c")), multi, resume=straight.checkpoint,
              progress=False)


def _legacy(path, payload, fmt, config):
    save_checkpoint(path, {**{k: v for k, v in payload.items() if k not in ("method", "method_state")},
                           "format": fmt, "config": config})
    return path


def test_old_checkpoint_formats_load(tmp_path, multi):
    digits = load_source("digits")["all"].subset(np.arange(80))
    dsh = train(TrainConfig(bits=16, epochs=1, batch_size=40, threads=1, out=str(tmp_path / "d")), digits,
                progress=False)
    iah = train(iah_cfg(tmp_path, epochs=1), multi, progress=False)
    d_payload, i_payload = load_checkpoint(dsh.checkpoint), load_checkpoint(iah.checkpoint)
    assert d_payload["format"] == i_payload["format"] == "deephash-train/2" and i_payload["method"] == "iah"
    old_dsh = {k: v for k, v in d_payload["config"].items() if k not in ("method", "method_options", "device")}
    c = i_payload["config"]
    old_iah = {"backbone": c["model"], **{k: c[k] for k in ("weights", "bits", "image_size", "epochs", "batch_size",
                                                              "lr", "weight_decay", "margin", "alpha", "mirror",
                                                              "frozen_backbone", "seed", "threads", "out")},
               **c["method_options"]}
    f_dsh = _legacy(tmp_path / "dsh1.ckpt", d_payload, "deephash-dsh/1", old_dsh)
    f_iah = _legacy(tmp_path / "iah1.ckpt", i_payload, "deephash-iah/1", old_iah)
    for f, res, ds in ((f_dsh, dsh, digits), (f_iah, iah, multi)):
        t = load_trained(f)
        assert t.checkpoint == f and not t.model.training and t.class_names == ds.class_names
        want = encode((res.model, load_trained(res.checkpoint).config), ds, progress=False)
        got = encode(t, ds, progress=False)
        np.testing.assert_array_equal(got.codes, want.codes)
        assert state_hash(model_from_checkpoint(f)) == state_hash(res.model)
    assert load_trained(f_iah).config.to_dict() == load_trained(iah.checkpoint).config.to_dict()
    resumed = Trainer(TrainConfig(**{**load_trained(f_dsh).config.to_dict(), "epochs": 1}), digits, progress=False)
    resumed.resume(f_dsh)  # an old DSH checkpoint still resumes
    assert resumed.epoch == 1
    with pytest.raises(DeephashError, match="before runs could resume"):
        Trainer(iah_cfg(tmp_path, epochs=1), multi, progress=False).resume(f_iah)


def test_encode_gives_what_each_method_has(tmp_path, multi):
    iah = train(iah_cfg(tmp_path, epochs=1), multi, progress=False)
    t = load_trained(tmp_path / "iah")  # a run folder
    assert t.method == "iah" and t.config.method_options["proposals"] == "grid"
    e = encode(t, multi.subset(np.arange(5)), progress=False)
    assert isinstance(e, Encoded) and e.bits == 16
    c = multi.num_classes
    assert e.codes.shape == (5, 2) and e.category.shape == (5, c, 2) and e.probs.shape == (5, c)
    assert e.boxes.shape == (5, c, 4) and 0 <= e.boxes.min() and e.boxes.max() <= 1
    np.testing.assert_array_equal(e.indices, np.arange(5))
    np.testing.assert_array_equal(encode((iah.model, iah_cfg(tmp_path, epochs=1)), multi.subset(np.arange(5)),
                                         progress=False).codes, e.codes)
    digits = load_source("digits")["all"].subset(np.arange(60))
    dsh = train(TrainConfig(bits=8, epochs=1, batch_size=30, threads=1, out=str(tmp_path / "d")), digits,
                progress=False)
    d = encode(load_trained(dsh.checkpoint), digits, progress=False)
    assert d.codes.shape == (60, 1) and d.category is None and d.probs is None and d.boxes is None
    assert d.bits == 8 and not d.failures


def test_cli_train_method_iah_on_a_yolo_folder_equals_iah_train_and_resumes(tmp_path):
    import json

    from test_cli import run
    from test_iah_e2e import _yolo_squares

    data = _yolo_squares(tmp_path / "sq", 12, 0)
    splits = load_source(data, 48)  # a box dataset, its YOLO split folders named for a protocol
    assert set(splits) == {"train", "test"} and len(splits["train"].boxes) == 12
    common = ["--bits", 16, "--image-size", 48, "--epochs", 2, "--batch-size", 6, "-q"]
    code, out, err = run("train", "--method", "iah", "--data", data, "-o", "top_n=8", "--out", tmp_path / "t", *common)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["method"] == "iah"
    t = load_trained(tmp_path / "t")
    assert t.method == "iah" and t.config.method_options["top_n"] == 8 and t.config.optimizer == "adamw"
    code, _, err = run("train", "--method", "iah", "--data", data, "-o", "topn=8", "--out", tmp_path / "x", *common)
    assert code != 0 and "unknown iah method option" in err
    # iah-train is `train --method iah` on one split: the same run gives the same weights
    code, _, err = run("iah-train", "--data", data, "--split", "train", "--top-n", 8, "--out", tmp_path / "a", *common)
    assert code == 0, err
    assert state_hash(load_trained(tmp_path / "a").model) == state_hash(t.model)
    # an interrupted iah-train run continues with --resume to the same weights
    cfg = TrainConfig(method="iah", data=str(data), bits=16, image_size=48, epochs=2, batch_size=6,
                      out=str(tmp_path / "b"), method_options={"top_n": 8})
    first = Trainer(cfg, splits["train"], progress=False)
    first.epochs = 1
    first.fit()
    code, _, err = run("iah-train", "--split", "train", "--resume", tmp_path / "b", "-q")  # its own settings
    assert code == 0, err
    assert state_hash(load_trained(tmp_path / "b").model) == state_hash(t.model)
    assert load_checkpoint(tmp_path / "b" / "last.ckpt")["epoch"] == 2


def test_losses_mine_by_default():
    from deephash.losses import DSHLoss, TripletRankingLoss
    from deephash.miners import AllPairsMiner, TripletMiner

    torch.manual_seed(0)
    x, y = torch.randn(8, 6), (torch.rand(8, 3) < 0.5).float()
    assert DSHLoss(6)(x, y) == DSHLoss(6)(x, tuples=AllPairsMiner()(x, y))
    assert TripletRankingLoss(6)(x, y) == TripletRankingLoss(6)(x, tuples=TripletMiner()(x, y))
    assert TripletRankingLoss(6)(x, y) > 0


def test_only_rank_zero_writes_checkpoints(tmp_path, monkeypatch):
    import deephash.train.trainer as engine

    digits = load_source("digits")["all"].subset(np.arange(40))
    monkeypatch.setattr(engine, "rank", lambda: 1)
    res = train(TrainConfig(bits=8, epochs=1, batch_size=20, threads=1, out=str(tmp_path / "r1")), digits,
                progress=False)
    assert len(res.history) == 1 and not (tmp_path / "r1").exists()
    monkeypatch.setattr(engine, "rank", lambda: 0)
    train(TrainConfig(bits=8, epochs=1, batch_size=20, threads=1, out=str(tmp_path / "r0")), digits, progress=False)
    assert (tmp_path / "r0" / "last.ckpt").is_file()
