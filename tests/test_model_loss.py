import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.losses import DSHLoss
from deephash.miners import AllPairsMiner, similarity_matrix
from deephash.models import WithinChannelLRN, create_model, list_models


def direct_dsh_loss(b, labels, m, alpha):
    """Literal small-case computation of papers.md: the ½-weighted pair term summed over i<j,
    divided by N(N−1); plus α · Σ‖|b|−1‖₁ / N."""
    n = len(b)
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = float(((b[i] - b[j]) ** 2).sum())
            sim = float(labels[i] @ labels[j]) > 0
            total += 0.5 * (d if sim else max(m - d, 0.0))
    reg = float(np.abs(np.abs(b) - 1).sum()) / n
    return total / (n * (n - 1)) + alpha * reg


def direct_gradient(b, labels, m, alpha):
    """Hand-derived gradient of the same loss (the one the authors' Caffe layer computes)."""
    n = len(b)
    g = np.zeros_like(b)
    pairs = n * (n - 1)  # d(½·D)/db_i = (b_i − b_j), divided by N(N−1)
    for i in range(n):
        for j in range(i + 1, n):
            diff = b[i] - b[j]
            d = float((diff ** 2).sum())
            sim = float(labels[i] @ labels[j]) > 0
            if sim:
                g[i] += diff / pairs
                g[j] -= diff / pairs
            elif d < m:
                g[i] -= diff / pairs
                g[j] += diff / pairs
    g += alpha / n * np.sign(b) * np.sign(np.abs(b) - 1)
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsh_loss_and_gradient_match_direct_computation(seed):
    rng = np.random.default_rng(seed)
    n, k = 7, 6
    b = rng.normal(scale=1.5, size=(n, k))
    labels = (rng.random((n, 4)) < 0.4).astype(np.float32)
    m = 2 * k
    out = torch.tensor(b, requires_grad=True)
    loss = DSHLoss(k)(out, tuples=AllPairsMiner()(out, torch.tensor(labels)))
    assert loss.item() == pytest.approx(direct_dsh_loss(b, labels, m, 0.01), rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(out.grad.numpy(), direct_gradient(b, labels, m, 0.01), rtol=1e-9, atol=1e-12)


def test_margin_and_alpha_options():
    b = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    lab = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pairs = AllPairsMiner()(None, lab)
    assert DSHLoss(2)(b, tuples=pairs).item() == 0.0          # d = 8 ≥ m = 4, |b| = 1
    assert DSHLoss(2, margin=10)(b, tuples=pairs).item() == pytest.approx(0.25 * 2)
    assert DSHLoss(2, margin=10, pair_weight=1.0)(b, tuples=pairs).item() == pytest.approx(2)
    assert DSHLoss(2, alpha=1.0)(b * 2, tuples=pairs).item() == pytest.approx(2.0)


def test_miner_all_pairs_and_multilabel_similarity():
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    i, j, sim = AllPairsMiner()(None, labels)
    assert len(i) == 6 and bool((i < j).all())
    got = {(int(a), int(b)): bool(s) for a, b, s in zip(i, j, sim)}
    assert got == {(0, 1): True, (0, 2): False, (0, 3): False, (1, 2): False, (1, 3): True, (2, 3): False}
    assert similarity_matrix(labels).diagonal().all()


def test_dsh_network_matches_paper_shapes():
    model = create_model("dsh", bits=12)
    conv = model.backbone.conv
    x = torch.rand(2, 3, 32, 32)
    assert conv(x).shape == (2, 64, 4, 4)        # Caffe's rounded-up pooling: 32→16→8→4
    assert model(x).shape == (2, 12)
    assert model.backbone.fc[1].in_features == 1024 and model.backbone.fc[1].out_features == 500
    codes = model.encode(x)
    assert codes.shape == (2, 2) and codes.dtype == np.uint8


def test_within_channel_lrn_formula():
    x = torch.randn(1, 2, 5, 5)
    y = WithinChannelLRN(3, alpha=0.5, beta=0.75)(x)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    ref = torch.empty_like(x)
    for c in range(2):
        for r in range(5):
            for s in range(5):
                window = xp[0, c, r:r + 3, s:s + 3]
                ref[0, c, r, s] = x[0, c, r, s] / (1 + 0.5 / 9 * (window ** 2).sum()) ** 0.75
    torch.testing.assert_close(y, ref)


def test_factory_registry_and_local_weights(tmp_path):
    assert {"dsh", "resnet18", "googlenet"} <= set(list_models())
    with pytest.raises(DeephashError, match="unknown model"):
        create_model("nope", bits=16)
    with pytest.raises(DeephashError, match="code length"):
        create_model("dsh", bits=0)
    src = create_model("resnet18", bits=16, image_size=32)
    torch.save(src.backbone.state_dict(), tmp_path / "r18.pth")
    dst = create_model("resnet18", bits=16, image_size=32, weights=tmp_path / "r18.pth")
    torch.testing.assert_close(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    with pytest.raises(DeephashError, match="no tensor matches"):
        create_model("dsh", bits=16, weights=tmp_path / "r18.pth")
    with pytest.raises(DeephashError, match="weights file not found"):
        create_model("dsh", bits=16, weights=tmp_path / "missing.pth")


def test_efficientnet_lite0_imagenet_weights_frozen_blocks_and_channels_last():
    from deephash.models.efficientnet import efficientnet_lite0_weights

    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", bits=24, image_size=64, weights="imagenet", frozen_blocks=3)
    fmap = model.backbone[0]
    assert torch.equal(fmap.net._conv_stem.weight, state["_conv_stem.weight"])
    assert not fmap.net._blocks[2]._depthwise_conv.weight.requires_grad
    assert fmap.net._blocks[3]._depthwise_conv.weight.requires_grad
    model.train()
    assert not fmap.net._bn0.training and fmap.net._bn1.training  # frozen batch-norm statistics stay fixed
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    plain = model(x)
    fast = model.use_channels_last()(x)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
    assert plain.shape == (4, 24)
    with pytest.raises(DeephashError, match="frozen_blocks"):
        create_model("efficientnet_lite0", bits=24, frozen_blocks=17)
    with pytest.raises(DeephashError, match="no installed ImageNet weights"):
        create_model("resnet18", bits=16, weights="imagenet")
