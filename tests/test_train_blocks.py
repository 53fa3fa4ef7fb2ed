"""Training the backbone's last blocks on stored maps of the frozen rest (``TrainConfig.train_blocks``)."""

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.data import load_source
from deephash.encode import encode_dataset
from deephash.features import maps_key, prefix_maps, stored_features
from deephash.models import create_model
from deephash.runs import TrainConfig, model_from_checkpoint
from deephash.train.trainer import train


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")["all"].subset(np.arange(160)).as_arrays()


def lite(train_blocks=2, **kw):
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 16, 64, hidden=32, **kw)
    return model.freeze_backbone(train_blocks).eval()


def test_prefix_then_tail_is_the_whole_network():
    fmap = create_model("efficientnet_lite0", 16, 64).backbone[0].eval()
    x = torch.randn(3, 3, 64, 64)
    whole = fmap(x)
    for k in (0, 5, fmap.num_blocks - 1, fmap.num_blocks):
        torch.testing.assert_close(fmap.tail(fmap.prefix(x, k), k), whole, msg=f"split at {k}")


def test_only_the_tail_and_head_train_and_the_prefix_stays_in_eval_mode():
    model = lite(2)
    model.train()
    fmap = model.backbone[0]
    n = fmap.num_blocks
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.startswith(f"backbone.0.net._blocks.{n - 1}.") for name in trainable)
    assert any(name.startswith(f"backbone.0.net._blocks.{n - 2}.") for name in trainable)
    assert any(name.startswith("backbone.0.net._conv_head") for name in trainable)
    assert not any(name.startswith(f"backbone.0.net._blocks.{n - 3}.") for name in trainable)
    assert not any(name.startswith("backbone.0.net._conv_stem") for name in trainable)
    assert not fmap.net._blocks[n - 3].training and fmap.net._blocks[n - 1].training
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model.from_stored(model.stored_input(x)), model(x))


def test_maps_are_cached_by_the_prefix_alone(digits):
    model = lite(1)
    images = digits.images[:20]
    maps = prefix_maps(model, images, progress=False)
    assert maps.dtype == torch.float16 and maps.ndim == 4 and len(maps) == 20
    x = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, size=(64, 64),
                                        mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(maps.float(), model.stored_input(x).detach(), atol=2e-2, rtol=1e-2)
    key = maps_key(model, images, False)
    with torch.no_grad():  # a fine-tuned tail reads the same maps ...
        model.backbone[0].net._conv_head.weight.add_(1.0)
    assert maps_key(model, images, False) == key
    torch.testing.assert_close(stored_features(model, images), maps)
    with torch.no_grad():  # ... a changed prefix does not
        model.backbone[0].net._blocks[0]._depthwise_conv.weight.add_(1.0)
    assert maps_key(model, images, False) != key
    assert stored_features(model, images) is None


def test_training_moves_the_tail_not_the_prefix_and_encodes_from_the_store(tmp_path, digits):
    cfg = TrainConfig(model="efficientnet_lite0", bits=16, image_size=64, data_size=32, epochs=2, batch_size=40,
                      frozen_backbone=True, train_blocks=1, mirror=True, weights="imagenet", optimizer="adam",
                      lr=1e-3, schedule="constant", threads=1, model_kwargs={"hidden": 32}, out=str(tmp_path / "run"))
    torch.manual_seed(0)
    initial = create_model("efficientnet_lite0", 16, 64, hidden=32, weights="imagenet").state_dict()
    res = train(cfg, digits, progress=False)
    after = res.model.state_dict()
    n = res.model.backbone[0].num_blocks
    moved = {k for k in initial if not torch.equal(initial[k], after[k])}
    assert any(k.startswith(f"backbone.0.net._blocks.{n - 1}.") for k in moved)
    assert any(k.startswith("backbone.0.net._conv_head") for k in moved)
    assert not any(k.startswith(("backbone.0.net._conv_stem", f"backbone.0.net._blocks.{n - 2}.")) for k in moved)
    # the checkpoint rebuilds the split model; encoding the training images reads their stored maps and gives
    # the codes of the full forward pass (the maps are float16: a sign may flip at an output near zero)
    model = model_from_checkpoint(res.checkpoint)
    assert model.train_blocks == 1
    x = torch.nn.functional.interpolate(torch.from_numpy(digits.images).permute(0, 3, 1, 2).float() / 255,
                                        size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    full = model.encode(x)

    def no_pixels(*_):
        raise AssertionError("encoding ran the frozen prefix instead of reading the stored maps")

    model.backbone[0].net._conv_stem.register_forward_pre_hook(no_pixels)
    stored = encode_dataset(model, digits, batch_size=64, progress=False).codes
    assert (np.unpackbits(stored) == np.unpackbits(full)).mean() > 0.99
    assert len(np.unique(stored, axis=0)) > 5  # trained codes, not a constant


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(DeephashError, match="frozen_backbone"):
        TrainConfig(model="efficientnet_lite0", train_blocks=1, out=str(tmp_path)).validate()
    with pytest.raises(DeephashError, match="train_blocks must be"):
        TrainConfig(model="efficientnet_lite0", frozen_backbone=True, train_blocks=-1, out=str(tmp_path)).validate()
    with pytest.raises(DeephashError, match="EfficientNet-Lite"):
        create_model("dsh", 16, 32).freeze_backbone(1)
    with pytest.raises(DeephashError, match="between 1 and"):
        create_model("efficientnet_lite0", 16, 64).freeze_backbone(99)
    # methods whose store is whole PyTorch features or maps cannot split it or compute it in ONNX Runtime
    for method, kw in (("itq", {"train_blocks": 1}), ("iah", {"train_blocks": 1}), ("iah", {"fast_features": True})):
        with pytest.raises(DeephashError, match=f"method {method} cannot use"):
            TrainConfig(method=method, model="efficientnet_lite0", frozen_backbone=True, out=str(tmp_path),
                        **kw).validate()
    with pytest.raises(DeephashError, match="fast_features .* needs frozen_backbone"):
        TrainConfig(model="efficientnet_lite0", fast_features=True, out=str(tmp_path)).validate()
    with pytest.raises(DeephashError, match="iah has no bf16"):
        TrainConfig(method="iah", bf16=True, out=str(tmp_path)).validate()


@pytest.mark.parametrize("train_blocks", [0, 1])
def test_every_trainable_parameter_gets_a_gradient(train_blocks):
    """DDP (torchrun) refuses a trainable parameter that no step reaches, such as the unused ImageNet classifier."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 16, 64, hidden=32)
    if train_blocks:
        model.freeze_backbone(train_blocks)
    model.train()
    x = torch.rand(2, 3, 64, 64)
    out = model.from_stored(model.stored_input(x)) if train_blocks else model(x)
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing and any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_runs_the_tail_in_bfloat16_and_the_loss_in_float32(tmp_path, digits, monkeypatch, caplog,
                                                                         native):
    """bf16 where the CPU has it natively; elsewhere float32 and one log line saying why (bf16 is only a speed
    setting, and an emulated one measured 8.5x slower). Both branches run on any CPU: the check is replaced."""
    import deephash.train.trainer as engine
    from deephash.train.trainer import Trainer

    monkeypatch.setattr(engine, "bf16_unavailable_reason", lambda device: None if native else "no bf16 here")
    cfg = TrainConfig(model="efficientnet_lite0", bits=16, image_size=64, data_size=32, epochs=2, batch_size=40,
                      frozen_backbone=True, train_blocks=1, bf16=True, optimizer="adam", lr=1e-3,
                      schedule="constant", threads=1, model_kwargs={"hidden": 32}, out=str(tmp_path / "run"))
    trainer = Trainer(cfg, digits, progress=False)
    seen = {}
    def hook(module, inputs, output):
        seen.setdefault("conv", output.dtype)

    trainer.model.backbone[0].net._conv_head.register_forward_hook(hook)
    objective = trainer.method.objective

    def spy(outputs, labels):
        seen.setdefault("loss_input", outputs.dtype)
        return objective(outputs, labels)

    trainer.method.objective = spy
    with caplog.at_level("WARNING", logger="deephash.train"):
        res = trainer.fit()
    assert seen == {"conv": torch.bfloat16 if native else torch.float32, "loss_input": torch.float32}
    warned = [r.getMessage() for r in caplog.records if "bf16" in r.getMessage()]
    assert warned == ([] if native else ["bf16 asked for, but no bf16 here: training in float32"])
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_bf16_is_native_only_where_the_cpu_and_its_libraries_have_it(monkeypatch):
    from deephash.utils import cpu

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # the math libraries held below the chip: never native
    assert "ATEN_CPU_CAPABILITY" in cpu.bf16_unavailable_reason("cpu")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    flags = {"avx512_bf16": False, "amx_bf16": False}
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: flags)
    assert "no bfloat16 instructions" in cpu.bf16_unavailable_reason("cpu")
    flags["avx512_bf16"] = True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert "oneDNN" in cpu.bf16_unavailable_reason("cpu")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert cpu.bf16_unavailable_reason("cpu") is None


def test_fast_maps_come_from_onnx_runtime_and_match_pytorch(digits):
    model = lite(1)
    images = digits.images[:16]
    slow = prefix_maps(model, images, progress=False)
    fast = prefix_maps(model, images, progress=False, fast=True)
    assert fast.dtype == torch.float16 and fast.shape == slow.shape
    torch.testing.assert_close(fast.float(), slow.float(), atol=1e-2, rtol=1e-2)
    assert maps_key(model, images, False, "onnxruntime x") != maps_key(model, images, False)
    from deephash.data.cache import cache_dir
    from deephash.models import runtime as rt

    assert rt.onnx_runner(model, part="prefix") is not None  # else fast=True would quietly be PyTorch
    name = rt.version_name(rt.backend())
    assert (cache_dir() / "features" / f"{maps_key(model, images, False, name)}.npy").is_file()


def test_fast_without_a_runtime_says_so(digits, monkeypatch, caplog):
    from deephash.models import runtime as rt

    monkeypatch.setattr(rt, "onnx_runner", lambda *a, **k: None)
    with caplog.at_level("WARNING", logger="deephash.features"):
        maps = prefix_maps(lite(1), digits.images[:4], progress=False, fast=True, cache=False)
    assert len(maps) == 4 and "no ONNX runtime" in caplog.text
