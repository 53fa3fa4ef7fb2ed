"""Training a head on a frozen backbone from stored features (deephash.features)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.data import load_source
from deephash.encode import encode_dataset
from deephash.features import backbone_features
from deephash.models import create_model
from deephash.runs import TrainConfig, model_from_checkpoint
from deephash.train.trainer import train


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")["all"].subset(np.arange(200)).as_arrays()


def frozen_cfg(tmp_path, **kw):
    base = dict(bits=16, epochs=3, batch_size=40, out=str(tmp_path / "run"), threads=1, frozen_backbone=True,
                optimizer="adam", lr=1e-3, schedule="constant", model_kwargs={"hidden": 32, "dropout": 0.1})
    base.update(kw)
    return TrainConfig(**base)


def test_only_the_head_trains_and_the_backbone_stays_fixed(tmp_path, digits):
    torch.manual_seed(0)
    initial = create_model("dsh", 16, 32, hidden=32, dropout=0.1).state_dict()
    res = train(frozen_cfg(tmp_path, epochs=4), digits, progress=False)
    after = res.model.state_dict()
    for k in initial:
        if k.startswith("backbone."):
            torch.testing.assert_close(after[k], initial[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(after["neck.1.weight"], initial["neck.1.weight"])
    assert not torch.equal(after["hash.weight"], initial["hash.weight"])
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_backbone_stays_in_eval_mode_when_the_model_trains():
    model = create_model("dsh", 16, 32, batch_norm=True).freeze_backbone()
    model.train()
    assert model.training and not any(m.training for m in model.backbone.modules())
    assert all(not p.requires_grad for p in model.backbone.parameters())


def test_features_are_cached_by_content(digits, monkeypatch):
    model = create_model("dsh", 16, 32).freeze_backbone()
    images = digits.images[:50]
    first = backbone_features(model, images, progress=False)
    direct = model.features(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(first, direct.detach())
    mirrored = backbone_features(model, images, mirror=True, progress=False)
    flipped = model.features(torch.from_numpy(images[:, :, ::-1].copy()).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(mirrored, flipped.detach())

    def fail(_):
        raise AssertionError("the backbone ran although its features were stored")

    monkeypatch.setattr(model, "features", fail)
    torch.testing.assert_close(backbone_features(model, images, progress=False), first, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="backbone ran"):  # other pixels are another entry
        backbone_features(model, images[::-1].copy(), progress=False)
    other = create_model("dsh", 16, 32).freeze_backbone()  # other weights are another entry too
    assert not torch.equal(backbone_features(other, images, progress=False), first)


def test_a_damaged_cache_entry_is_recomputed(digits):
    from deephash.data.cache import cache_dir
    from deephash.features import features_key

    model = create_model("dsh", 16, 32).freeze_backbone()
    images = digits.images[:20]
    good = backbone_features(model, images, progress=False)
    path = cache_dir() / "features" / f"{features_key(model, images, False)}.npy"
    path.write_bytes(path.read_bytes()[:100])
    torch.testing.assert_close(backbone_features(model, images, progress=False), good)


def test_encoding_from_stored_features_equals_the_full_forward(tmp_path, digits):
    res = train(frozen_cfg(tmp_path), digits, progress=False)
    model = model_from_checkpoint(res.checkpoint)
    assert model.backbone_frozen and isinstance(model.neck, torch.nn.Sequential)
    codes = encode_dataset(model, digits, progress=False).codes
    full = model.encode(torch.from_numpy(digits.images).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_array_equal(codes, full)


def test_frozen_backbone_refuses_random_crops(tmp_path):
    with pytest.raises(DeephashError, match="cannot take random crops"):
        frozen_cfg(tmp_path, crop_pad=4).validate()


def test_bad_head_settings_are_refused():
    with pytest.raises(DeephashError, match="hidden must be"):
        create_model("dsh", 16, 32, hidden=-1)
    with pytest.raises(DeephashError, match="dropout"):
        create_model("dsh", 16, 32, dropout=1.0)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")))
def test_every_shipped_config_is_valid(name):
    cfg = TrainConfig.from_yaml(Path(__file__).resolve().parents[1] / "configs" / name).validate()
    assert cfg.bits >= 1


def test_shipped_best_recipe_config_is_valid():
    from pathlib import Path

    cfg = TrainConfig.from_yaml(Path(__file__).resolve().parents[1] / "configs/cifar10_best.yaml").validate()
    assert cfg.frozen_backbone and cfg.model == "efficientnet_lite0" and cfg.model_kwargs["hidden"] > 0


def test_cli_trains_a_frozen_backbone_on_native_size_data_and_encodes(tmp_path):
    from test_cli import run

    code, out, err = run("train", "--data", "digits", "--protocol", "holdout", "--bits", "16", "--epochs", "2",
                         "--batch-size", "50", "--image-size", "40", "--data-size", "32", "--frozen-backbone",
                         "--hidden", "24", "--dropout", "0.1", "--optimizer", "adam", "--no-mirror", "-q",
                         "--out", tmp_path / "run")
    assert code == 0, err
    ckpt = model_from_checkpoint(tmp_path / "run")
    assert ckpt.backbone_frozen and ckpt.image_size == (40, 40) and ckpt.neck[1].out_features == 24
    code, out, err = run("encode", tmp_path / "run", "--split", "query", "--out", tmp_path / "q.npz", "-q")
    assert code == 0, err
    from deephash.codes import CodesFile

    cf = CodesFile.load(tmp_path / "q.npz")
    assert cf.meta["image_size"] == 32 and cf.codes.shape == (len(cf), 2)
    code, out, err = run("train", "--data", "digits", "--frozen-backbone", "--crop-pad", "2", "--out", tmp_path / "x")
    assert code == 2 and "cannot take random crops" in err


def test_resume_of_a_checkpoint_that_predates_a_setting_compares_with_its_default():
    saved = TrainConfig().to_dict()
    del saved["frozen_backbone"], saved["data_size"]  # written before these settings existed
    assert TrainConfig().resume_conflicts(saved) == []
    conflicts = TrainConfig(frozen_backbone=True, data_size=32).resume_conflicts(saved)
    assert [c.split(":")[0] for c in conflicts] == ["data_size", "frozen_backbone"]


def test_encode_reads_stored_features_but_never_writes_them(digits):
    from deephash.data.cache import cache_dir
    from deephash.features import stored_features

    model = create_model("dsh", 16, 32, hidden=8).freeze_backbone()
    images = digits.images[:30]
    assert stored_features(model, images) is None
    before = set((cache_dir() / "features").glob("*.npy")) if (cache_dir() / "features").exists() else set()
    codes = encode_dataset(model, digits.subset(np.arange(30)), progress=False).codes
    after = set((cache_dir() / "features").glob("*.npy")) if (cache_dir() / "features").exists() else set()
    assert after == before
    backbone_features(model, images, progress=False)
    assert stored_features(model, images) is not None
    np.testing.assert_array_equal(encode_dataset(model, digits.subset(np.arange(30)), progress=False).codes, codes)


def test_fast_features_come_from_onnx_runtime_under_their_own_key(digits, monkeypatch):
    import deephash.features as features

    model = create_model("efficientnet_lite0", 16, 64).freeze_backbone()
    images = digits.images[:24]
    torch_feats = backbone_features(model, images, progress=False)
    fast = backbone_features(model, images, progress=False, fast=True)
    torch.testing.assert_close(fast, torch_feats, atol=1e-4, rtol=1e-3)
    assert not torch.equal(fast, torch_feats)  # rounding differs: ONNX Runtime really ran
    assert features.features_key(model, images, False, "onnxruntime x") != features.features_key(model, images, False)

    def fail(_):
        raise AssertionError("the backbone ran although its features were stored")

    monkeypatch.setattr(model, "features", fail)  # both entries are read back, neither recomputed
    torch.testing.assert_close(backbone_features(model, images, progress=False, fast=True), fast)
    torch.testing.assert_close(backbone_features(model, images, progress=False), torch_feats)


def test_fast_features_setting_trains_on_the_runtime_store_and_encode_reads_it(tmp_path, digits, monkeypatch):
    cfg = frozen_cfg(tmp_path, model="efficientnet_lite0", image_size=64, data_size=32, epochs=1, mirror=False,
                     fast_features=True)
    res = train(cfg, digits, progress=False)
    model = model_from_checkpoint(res.checkpoint)
    import deephash.features as features

    assert not features._cache_path(model, digits.images, False).exists()  # no PyTorch pass was made
    fast = backbone_features(model, digits.images, progress=False, fast=True)

    def fail(_):
        raise AssertionError("the backbone ran although the fast store held these images' features")

    monkeypatch.setattr(model, "features", fail)
    codes = encode_dataset(model, digits, batch_size=64, progress=False).codes
    np.testing.assert_array_equal(codes, model.encode_stored(fast)[0])
