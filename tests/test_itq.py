"""ITQ (methods/itq.py) against a literal numpy transcription of Gong & Lazebnik's algorithm, and as a method of
the one training engine (``deephash train --method itq``, load_trained, encode)."""

import numpy as np
import pytest

from deephash import DeephashError
from deephash.codes import pack_bits
from deephash.data import load_source
from deephash.methods.itq import fit_itq, itq_rotation, pca
from deephash.runs import encode, list_methods, load_trained
from deephash.train import TrainConfig, train


def literal_itq(x, bits, iterations, r0):
    """The paper's reference code (ITQ.m / compressITQ.m) line by line: centre, PCA by the covariance's
    eigenvectors, then alternate B = sign(VR) and [UB, S, UA] = svd(B'V), R = UA UB'."""
    x = x - x.mean(0)
    cov = x.T @ x / (len(x) - 1)
    evals, evecs = np.linalg.eigh(cov)
    pc = evecs[:, np.argsort(-evals)[:bits]]
    v = x @ pc
    r = r0
    for _ in range(iterations):
        z = v @ r
        ux = -np.ones_like(z)
        ux[z >= 0] = 1
        ub, _, ua_t = np.linalg.svd(ux.T @ v)
        r = ua_t.T @ ub.T
    return pc, v, r


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(1)
    # correlated, anisotropic features with a non-zero mean, like a backbone's pooled outputs
    return rng.standard_normal((400, 40)) @ rng.standard_normal((40, 40)) * 0.3 + rng.uniform(0, 2, 40)


def test_itq_matches_the_literal_algorithm(feats):
    bits, iters = 16, 50
    mean, w = pca(feats, bits)
    pc, v_lit, r_lit = literal_itq(feats.copy(), bits, iters,
                                   np.linalg.svd(np.random.default_rng(7).standard_normal((bits, bits)))[0])
    # same principal subspace, each direction up to its sign
    signs = np.sign((w * pc).sum(0))
    np.testing.assert_allclose(w, pc * signs, atol=1e-8)
    # with the same projection and start the rotation is the literal one
    r, losses = itq_rotation(v_lit, iters, seed=7)
    np.testing.assert_allclose(r, r_lit, atol=1e-8)
    np.testing.assert_allclose(r @ r.T, np.eye(bits), atol=1e-10)
    # and the codes of the fitted linear map are the literal sign(V R)
    weight, bias, _ = fit_itq(feats, bits, iters, seed=7)
    ours = feats @ weight.T + bias
    lit = (feats - feats.mean(0)) @ (w @ itq_rotation((feats - mean) @ w, iters, 7)[0])
    np.testing.assert_array_equal(ours >= 0, lit >= 0)


def test_pca_of_fewer_images_than_dimensions_is_the_covariance_one(feats):
    """A small photo folder (N < D) takes the Gram-matrix route: the same directions, each up to its sign."""
    few = feats[:30]  # 30 images of 40-d features
    _, w = pca(few, 8)
    pc = literal_itq(few.copy(), 8, 0, np.eye(8))[0]
    np.testing.assert_allclose(w, pc * np.sign((w * pc).sum(0)), atol=1e-8)


def test_itq_quantisation_loss_decreases(feats):
    _, w = pca(feats, 16)
    _, losses = itq_rotation((feats - feats.mean(0)) @ w, 50, seed=0)
    assert len(losses) == 51
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))  # each alternation can only lower it
    assert losses[-1] < losses[0] - 1.0
    v = (feats - feats.mean(0)) @ w
    rng = np.random.default_rng(3)
    for _ in range(20):  # better than any of 20 random rotations
        q = np.linalg.svd(rng.standard_normal((16, 16)))[0]
        z = v @ q
        assert losses[-1] < ((np.where(z >= 0, 1, -1) - z) ** 2).sum() / len(v)


def test_itq_refuses_too_few_images_or_dims(feats):
    with pytest.raises(DeephashError, match="more images than bits"):
        pca(feats[:16], 16)
    with pytest.raises(DeephashError, match="at most 40 bits"):
        pca(feats, 48)


def test_itq_is_a_method_of_the_training_engine(tmp_path):
    assert "itq" in list_methods()
    data = load_source("digits")["all"].subset(np.arange(300))
    data.labels[:] = 0  # no labels at all: ITQ does not need them
    data.labels[:, 0] = 1
    cfg = TrainConfig(method="itq", model="dsh", image_size=32, bits=16, threads=1, out=str(tmp_path / "itq"))
    result = train(cfg, data, progress=False)
    h = result.history[-1]
    assert h["epoch"] == 1 and h["loss"] < h["initial_loss"]
    trained = load_trained(result.checkpoint)
    assert trained.method == "itq" and trained.model.backbone_frozen
    enc = encode(trained, data, progress=False)
    feats = trained.model.features(__import__("torch").from_numpy(data.images).permute(0, 3, 1, 2).float() / 255)
    weight, bias, _ = fit_itq(feats.detach().numpy(), 16, 50, seed=0)
    expect = pack_bits((feats.detach().numpy() @ weight.T + bias >= 0).astype(np.uint8))
    assert (enc.codes == expect).mean() > 0.99  # float32 vs float64 rounding may flip a bit on a boundary
    with pytest.raises(DeephashError, match="hidden must be 0"):
        TrainConfig(method="itq", model="dsh", model_kwargs={"hidden": 64}, out=str(tmp_path / "x")).validate()
