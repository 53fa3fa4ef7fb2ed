"""The model registry (pooled hashing models and IAH in one), hash activations, and stable feature-cache keys."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.codes import binarize, encode_outputs
from deephash.models import (
    HashingModel,
    IAHNet,
    create_activation,
    create_model,
    list_activations,
    list_backbones,
    list_models,
    register_activation,
    registry,
)
from deephash.models import activations as activations_module

MODELS = Path(__file__).resolve().parents[1] / "src/deephash/models"


def test_one_registry_holds_pooled_models_and_iah():
    assert {"dsh", "resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_lite0",
            "googlenet", "iah"} <= set(list_models())
    assert set(list_backbones("map")) == {"dsh", "resnet18", "googlenet", "efficientnet_lite0"}
    assert isinstance(create_model("dsh", bits=12), HashingModel)
    net = create_model("iah", bits=16, num_classes=3, backbone="dsh", image_size=32, levels=(1,), hidden=8)
    assert isinstance(net, IAHNet) and net.image_size == (32, 32) and net.shared[0].out_features == 8
    with pytest.raises(DeephashError, match="unknown map backbone 'resnet50'"):
        create_model("iah", bits=16, num_classes=3, backbone="resnet50")
    with pytest.raises(DeephashError, match="model 'dsh'.*colour"):
        create_model("dsh", bits=16, colour=True)
    with pytest.raises(DeephashError, match="model 'iah'.*num_classes"):
        create_model("iah", bits=16)
    with pytest.raises(DeephashError, match="pooling"):
        create_model("iah", bits=16, num_classes=3, pooling="mean")


def test_duplicate_names_are_refused(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    with pytest.raises(DeephashError, match="model 'iah' is already registered"):
        registry.register_model("iah")(lambda bits: None)
    with pytest.raises(DeephashError, match="pooled backbone 'resnet18' is already registered"):
        registry.register_backbone("resnet18")(lambda size: None)
    with pytest.raises(DeephashError, match="map backbone 'dsh' is already registered"):
        registry.register_backbone("dsh", "map")(lambda weights=None: None)
    with pytest.raises(DeephashError, match="model 'iah' is already registered"):  # a pooled backbone is a model
        registry.register_backbone("iah")(lambda size: None)
    assert ("pooled", "iah") not in registry._BACKBONES
    with pytest.raises(DeephashError, match="kind"):
        registry.register_backbone("x", "grid")

    @registry.register_backbone("tiny")
    def _tiny(size):
        return torch.nn.Flatten(), 3 * size[0] * size[1], {"mean": (0, 0, 0), "std": (1, 1, 1)}

    model = create_model("tiny", bits=8, image_size=4, activation="tanh")
    assert model.hash.in_features == 48 and model(torch.rand(2, 3, 4, 4)).shape == (2, 8)


def test_weights_loading_has_no_import_cycle():
    def imports(name):
        tree = ast.parse((MODELS / name).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

    assert "registry" not in imports("efficientnet.py") and "registry" not in imports("weights.py")
    assert {"weights", "efficientnet"} <= imports("registry.py")
    from deephash.models import load_backbone_weights, load_matching  # noqa: F401 - still re-exported


def test_state_dict_names_are_unchanged_so_old_checkpoints_load():
    """Checkpoints store state dicts only: the default (identity) activation must add no entry."""
    keys = create_model("dsh", bits=12, hidden=8).state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"backbone", "neck", "hash", "mean", "std"}
    iah = create_model("iah", bits=12, num_classes=2).state_dict().keys()
    assert {k.split(".")[0] for k in iah} == {"features", "shared", "classifier", "hash", "mean", "std"}


# features_key values of fixed weights and pixels: a rename or move of the model classes must not invalidate
# features already cached on disk. The keys were first pinned on the code before the registry rewrite (commit
# bd89a38); the weights are now made with exactly rounded float32 steps, so the keys are the same on any CPU
# (they were re-pinned on code that still gave bd89a38's keys for the former weights).
PINNED_KEYS = {
    ("dsh", ()): ("0ef6ea9da0df437611cbf07e76211471714536bfc1bc047334ca80104c30ad50",
                  "e92c1fb0dbf32a8480be408db8b598bbd4c7c4179f70d5ea1f90ec2be4dbadf4"),
    ("dsh", (("batch_norm", True), ("hidden", 8))): (
        "34ff23cff8dec21973f12736198ebfae72183ed8aac81286636de797e4611050",
        "89c4b2e1449f2afea00a506185be9b3def123cef92384bb22a47ff763077e829"),
    ("resnet18", ()): ("d2370f22d4c0088b4791b7060f4c82a3818500acf26bf626ea0bed372b515265",
                       "b9467eeea1e505d8a43e788b7fd87b958f935d5beb950621ea8981e8ff742864"),
    ("efficientnet_lite0", (("frozen_blocks", 3),)): (
        "8496a2807e76e8f24127ed9bd9e520baddcc624ce34561d9e69501d2494f0d43",
        "fbfc278f404b82bf3db4f5f5dbaeaedc03d17cede46eca0f8253e0432c9e3c75"),
}


@pytest.mark.parametrize("name,kw", list(PINNED_KEYS))
def test_features_key_is_unchanged_for_existing_caches(name, kw, monkeypatch):
    from deephash.features import features_key

    if name == "efficientnet_lite0":
        pytest.importorskip("efficientnet_lite_pytorch")
    monkeypatch.setattr(torch, "__version__", "pinned")  # the key includes the torch version
    model = create_model(name, bits=12, image_size=16, **dict(kw))
    with torch.no_grad():  # fixed weights, independent of the RNG
        for i, (_, t) in enumerate(sorted(model.state_dict().items())):
            if t.is_floating_point():  # single correctly rounded float32 operations: the same bits on any CPU
                steps = (np.arange(t.numel()) % 201 - 100).astype(np.float32) / np.float32(100)
                t.copy_(torch.from_numpy(steps * np.float32((i % 7 + 1) / 7)).view_as(t))
    pixels = (np.arange(2 * 16 * 16 * 3) % 251).astype(np.uint8).reshape(2, 16, 16, 3)
    assert (features_key(model, pixels, False), features_key(model, pixels, True)) == PINNED_KEYS[name, kw]


def test_activation_values_gradients_and_bits():
    x = torch.tensor([[-2.0, -0.25, 0.0, 0.5, 3.0]])
    expected = {"identity": x, "tanh": torch.tanh(x), "scaled_tanh": torch.tanh(2.5 * x),
                "sign_ste": torch.tensor([[-1.0, -1.0, 1.0, 1.0, 1.0]])}
    grads = {"identity": torch.ones_like(x), "tanh": 1 - torch.tanh(x) ** 2,
             "scaled_tanh": 2.5 * (1 - torch.tanh(2.5 * x) ** 2), "sign_ste": torch.ones_like(x)}
    assert set(expected) <= set(list_activations())
    for name in expected:
        act = create_activation(name, **({"beta": 2.5} if name == "scaled_tanh" else {}))
        xi = x.clone().requires_grad_(True)
        y = act(xi)
        torch.testing.assert_close(y.detach(), expected[name], rtol=0, atol=1e-7, msg=name)
        y.backward(torch.ones_like(y))
        torch.testing.assert_close(xi.grad, grads[name], msg=name)
        np.testing.assert_array_equal(binarize(y), [[0, 0, 1, 1, 1]], err_msg=name)


@pytest.mark.parametrize("activation", ["identity", "tanh", "scaled_tanh", "sign_ste"])
def test_model_forward_is_activated_and_encode_packs_its_signs(activation):
    torch.manual_seed(0)
    model = create_model("dsh", bits=12, activation=activation).eval()
    torch.manual_seed(0)
    raw = create_model("dsh", bits=12).eval()
    x = torch.rand(6, 3, 32, 32)
    out, z = model(x), raw(x)
    reference = create_activation(activation)(z)
    torch.testing.assert_close(out, reference, msg=activation)
    if activation == "sign_ste":
        assert set(out.unique().tolist()) <= {-1.0, 1.0}
    elif activation != "identity":
        assert out.abs().max() <= 1 and z.abs().max() > 1
    np.testing.assert_array_equal(model.encode(x), encode_outputs(z))
    loss = model(x).sum()
    loss.backward()
    assert model.hash.weight.grad.abs().sum() > 0  # sign_ste too: the straight-through gradient reaches the layer


def test_activation_settings_are_checked_and_registry_refuses_duplicates():
    with pytest.raises(DeephashError, match="unknown hash activation 'relu'"):
        create_model("dsh", bits=12, activation="relu")
    for beta in (0, -1, float("inf"), "big"):
        with pytest.raises(DeephashError, match="beta"):
            create_activation("scaled_tanh", beta=beta)
    with pytest.raises(DeephashError, match="hash activation 'tanh'"):
        create_activation("tanh", beta=2)
    with pytest.raises(DeephashError, match="'tanh' is already registered"):
        register_activation("tanh")(torch.nn.Identity)
    assert "tanh" in activations_module._ACTIVATIONS and activations_module._ACTIVATIONS["tanh"] is not torch.nn.Identity


def test_scaled_tanh_beta_is_settable_and_travels_in_the_state_dict():
    model = create_model("dsh", bits=12, activation="scaled_tanh", activation_kwargs={"beta": 1.5})
    model.activation.set_beta(8.0)
    rebuilt = create_model("dsh", bits=12, activation="scaled_tanh")
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.activation.beta.item() == 8.0
    with pytest.raises(RuntimeError, match="activation.beta"):  # not silently dropped into an identity model
        create_model("dsh", bits=12).load_state_dict(model.state_dict())


def test_train_config_activation_is_rebuilt_from_the_checkpoint(tmp_path):
    from deephash.data import load_source
    from deephash.runs import TrainConfig, model_from_checkpoint
    from deephash.train.trainer import train

    data = load_source("digits")["all"].subset(np.arange(80))
    cfg = TrainConfig(bits=16, epochs=1, batch_size=40, threads=1, out=str(tmp_path / "run"),
                      model_kwargs={"activation": "tanh"})
    res = train(cfg, data, progress=False)
    model = model_from_checkpoint(res.checkpoint)
    assert model.activation.name == "tanh"
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, torch.tanh(model.hash(model.neck(model.features(x)))))
        torch.testing.assert_close(out, res.model.eval()(x))
    np.testing.assert_array_equal(model.encode(x), res.model.encode(x))
