"""Test-time mirroring (``TrainConfig.mirror_average``): codes from the mean of an image's and its mirror's outputs,
the same in PyTorch, in ONNX Runtime and from a frozen model's stored features."""

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.codes import encode_outputs
from deephash.data import load_source
from deephash.encode import encode_dataset
from deephash.models import create_model
from deephash.models import runtime as rt
from deephash.runs import TrainConfig, model_from_checkpoint
from deephash.train.trainer import train


def _tiny(mirror_average=True):
    torch.manual_seed(0)
    model = create_model("dsh", bits=32, image_size=32).eval()
    model.mirror_average = mirror_average
    return model


def _bits(codes):
    return np.unpackbits(codes, axis=1)


def test_an_image_and_its_mirror_get_one_code_from_the_mean_output():
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plain = _tiny(False)
    assert not np.array_equal(plain.encode(x), plain.encode(x.flip(-1)))  # the check below could fail
    model = _tiny()
    with torch.no_grad():
        want = encode_outputs((model(x) + model(x.flip(-1))) / 2)
    np.testing.assert_array_equal(model.encode(x), want)
    np.testing.assert_array_equal(model.encode(x), model.encode(x.flip(-1)))


def test_the_runtime_averages_too():
    pytest.importorskip("onnxruntime")
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model = _tiny()
    want = model.encode(x)
    runner = rt.onnx_runner(model)
    assert runner is not None
    fast = model.use_runtime(runner).encode(x)
    assert (_bits(fast) == _bits(want)).mean() >= 0.99
    assert (_bits(fast) == _bits(model.encode(x.flip(-1)))).mean() >= 0.99


def test_stored_rows_need_their_mirror():
    model = _tiny()
    with pytest.raises(DeephashError, match="mirrored rows"):
        model.encode_stored(torch.rand(2, model.features(torch.rand(1, 3, 32, 32)).shape[1]))


def test_a_trained_model_keeps_it_and_encodes_from_both_stored_views(tmp_path):
    digits = load_source("digits")["all"].subset(np.arange(120)).as_arrays()
    cfg = TrainConfig(model="efficientnet_lite0", bits=16, image_size=64, data_size=32, epochs=4, batch_size=40,
                      frozen_backbone=True, mirror=True, mirror_average=True, weights="imagenet", optimizer="adam",
                      lr=1e-2, schedule="constant", threads=1, model_kwargs={"hidden": 32}, out=str(tmp_path / "run"))
    res = train(cfg, digits, progress=False)
    model = model_from_checkpoint(res.checkpoint)
    assert model.mirror_average
    x = torch.nn.functional.interpolate(torch.from_numpy(digits.images).permute(0, 3, 1, 2).float() / 255,
                                        size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    full = model.encode(x)
    hook = model.backbone[0].net._conv_stem.register_forward_pre_hook(
        lambda *_: (_ for _ in ()).throw(AssertionError("ran the backbone instead of reading both stored views")))
    stored = encode_dataset(model, digits, batch_size=64, progress=False).codes
    hook.remove()
    assert (_bits(stored) == _bits(full)).mean() > 0.99
    assert len(np.unique(stored, axis=0)) > 5  # trained codes, not a constant
    model.mirror_average = False  # the store's first view alone gives other codes
    assert not np.array_equal(encode_dataset(model, digits, batch_size=64, progress=False).codes, stored)


def test_methods_without_it_refuse_it(tmp_path):
    with pytest.raises(DeephashError, match="method iah cannot use mirror_average"):
        TrainConfig(method="iah", mirror_average=True, out=str(tmp_path)).validate()
