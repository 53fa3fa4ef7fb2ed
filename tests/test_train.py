import numpy as np
import pytest
import torch

from deephash import DeephashError
from deephash.data import load_source
from deephash.runs import TrainConfig, load_checkpoint, model_from_checkpoint, save_checkpoint
from deephash.runs.schedule import lr_factor
from deephash.train.trainer import Trainer, train


@pytest.fixture(scope="module")
def small_digits():
    ds = load_source("digits")["all"]
    return ds.subset(np.arange(240))


def cfg(tmp_path, **kw):
    base = dict(bits=16, epochs=2, batch_size=40, out=str(tmp_path / "run"), threads=1, crop_pad=2)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_exactly(tmp_path, small_digits):
    straight = train(cfg(tmp_path / "a", epochs=3), small_digits, progress=False)
    first = Trainer(cfg(tmp_path / "b", epochs=3), small_digits, progress=False)
    first.epochs = 1  # stop after one epoch, as an interrupted run would
    first.fit()
    resumed = train(cfg(tmp_path / "b", epochs=3), small_digits, resume=tmp_path / "b" / "run", progress=False)
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]


def test_checkpoint_is_self_contained_and_verified(tmp_path, small_digits):
    res = train(cfg(tmp_path, epochs=1), small_digits, progress=False)
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["bits"] == 16 and ckpt["class_names"] == [str(i) for i in range(10)]
    model = model_from_checkpoint(res.checkpoint)
    x = torch.rand(3, 3, 32, 32)
    np.testing.assert_array_equal(model.encode(x), res.model.encode(x))
    data = res.checkpoint.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[:-100])
    with pytest.raises(DeephashError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    flipped = bytearray(data)
    flipped[-500] ^= 1
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(DeephashError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "flip.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"hello")
    with pytest.raises(DeephashError, match="not a deephash checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")


def test_resume_with_other_bit_length_is_refused(tmp_path, small_digits):
    res = train(cfg(tmp_path, epochs=1), small_digits, progress=False)
    with pytest.raises(DeephashError, match="16-bit model but this run is configured for 24 bits"):
        train(cfg(tmp_path / "x", bits=24), small_digits, resume=res.checkpoint, progress=False)


def test_atomic_save_keeps_previous_file_on_failure(tmp_path):
    path = tmp_path / "c.ckpt"
    good = {"format": "deephash-dsh/1", "config": {}, "bits": 16, "class_names": [], "model": {}}
    save_checkpoint(path, good)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {**good, "a": Boom()})
    assert load_checkpoint(path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]


def test_training_reduces_loss_and_fine_tune_from_other_length(tmp_path, small_digits):
    res = train(cfg(tmp_path, epochs=4, optimizer="adam", schedule="cosine", balanced=True), small_digits,
                progress=False)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    ft = Trainer(cfg(tmp_path / "ft", bits=24, init_from=str(res.checkpoint), hash_lr_mult=10), small_digits,
                 progress=False)
    torch.testing.assert_close(ft.model.backbone.conv[0].weight, res.model.backbone.conv[0].weight)
    assert ft.model.hash.out_features == 24


def test_lr_schedules():
    c = TrainConfig(schedule="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_factor(c, s, 100) for s in (0, 49, 50, 75, 99)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    c = TrainConfig(schedule="cosine")
    assert lr_factor(c, 0, 100) == 1.0 and lr_factor(c, 100, 100) == pytest.approx(0.0)


def test_config_errors(tmp_path):
    with pytest.raises(DeephashError, match="optimizer"):
        TrainConfig(optimizer="rmsprop").validate()
    (tmp_path / "c.yaml").write_text("bits: 24\nnot_a_key: 1\n")
    with pytest.raises(DeephashError, match="unknown config keys: not_a_key"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("bits: 24\nepochs: 2\n")
    c = TrainConfig.from_yaml(tmp_path / "d.yaml", epochs=5)
    assert c.bits == 24 and c.epochs == 5


def test_resume_refuses_changed_settings(tmp_path, small_digits):
    res = train(cfg(tmp_path, epochs=1), small_digits, progress=False)
    with pytest.raises(DeephashError, match=r"changed settings: lr: checkpoint 0.001, now 0.01"):
        train(cfg(tmp_path, epochs=1, lr=0.01), small_digits, resume=res.checkpoint, progress=False)


def test_crop_pad_is_validated():
    with pytest.raises(DeephashError, match="crop_pad must be between 0 and image_size - 1"):
        TrainConfig(crop_pad=32).validate()
    with pytest.raises(DeephashError, match="crop_pad"):
        TrainConfig(crop_pad=-1).validate()


def test_balanced_batches_edge_cases():
    from deephash.data.samplers import balanced_batches

    labels = np.eye(10, dtype=np.uint8)[np.arange(100) % 10]
    batches = balanced_batches(labels, 20, 0, 0)
    assert len(batches) == 5 and all(len(b) == 20 for b in batches)
    assert all((labels[b].sum(0) == 2).all() for b in batches)
    with pytest.raises(DeephashError, match="cannot hold one image of each of 10 classes"):
        balanced_batches(labels, 4, 0, 0)
    with pytest.raises(DeephashError, match="every label row is empty"):
        balanced_batches(np.zeros((10, 3), np.uint8), 6, 0, 0)
    multi = np.ones((30, 3), np.uint8)
    assert all(len(np.unique(b)) == len(b) for b in balanced_batches(multi, 9, 0, 0))


def test_channels_last_training_is_recorded_and_restored(tmp_path, small_digits):
    res = train(cfg(tmp_path, epochs=1, channels_last=True), small_digits, progress=False)
    assert res.model.channels_last
    model = model_from_checkpoint(res.checkpoint)
    assert model.channels_last
    assert model.backbone.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(model(x), res.model(x))
    again = Trainer(cfg(tmp_path, epochs=1, channels_last=False), small_digits, progress=False)
    again.resume(res.checkpoint)  # memory layout is not part of a run's identity
    assert again.step == res.history[-1]["step"]
