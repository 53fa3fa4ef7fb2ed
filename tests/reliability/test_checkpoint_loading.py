"""Checkpoint loading is safe and strict: a crafted pickle never runs, a payload of the wrong shape is refused
naming the file, and every payload the trainer writes (and an older one holding numpy scalars) still loads."""

import hashlib
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deephash.cli import app
from deephash.data import load_source
from deephash.errors import CorruptFileError, DeephashError
from deephash.runs import TrainConfig, load_trained
from deephash.runs.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from deephash.train.trainer import Trainer, train

from corpus import assert_refused


def write_raw(path, obj) -> None:
    """A checkpoint file holding exactly ``obj`` (pickled by torch.save as is) under a valid digest, as an
    attacker or an older version would write it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    body = buf.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    digits = load_source("digits")["all"].subset(np.arange(60))
    res = train(TrainConfig(bits=8, epochs=1, batch_size=30, threads=1, out=str(root / "run")), digits,
                progress=False)
    return res.checkpoint


def image_folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_crafted_pickle_never_runs_on_encode(tmp_path, trained):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    write_raw(evil, {**load_checkpoint(trained), "history": [Evil(marker)]})
    code, out = cli("encode", evil, "--images", image_folder(tmp_path / "imgs"), "--out", tmp_path / "c.npz")
    assert_refused(code, out, str(evil))
    assert "refused" in out and "posix.system" in out
    assert not marker.exists() and not (tmp_path / "c.npz").exists()
    with pytest.raises(CorruptFileError, match="other than tensors and plain data"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_index_manifest_naming_a_crafted_checkpoint_never_runs_it(tmp_path, trained):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(trained.read_bytes())
    imgs = image_folder(tmp_path / "imgs")
    assert cli("encode", ckpt, "--images", imgs, "--out", tmp_path / "c.npz", "-q")[0] == 0
    assert cli("index", "build", "--codes", tmp_path / "c.npz", "--out", tmp_path / "idx", "-q")[0] == 0
    assert str(ckpt.resolve()) in (tmp_path / "idx" / "manifest.json").read_text()
    marker = tmp_path / "pwned"
    write_raw(ckpt, {**load_checkpoint(trained), "model": Evil(marker)})  # the file the manifest names
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir() if p.is_file()}
    code, out = cli("search", "--index", tmp_path / "idx", "--image", imgs / "0.png")
    assert_refused(code, out, str(ckpt.resolve()))
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir() if p.is_file()} == before


@pytest.mark.parametrize("payload, says", [
    ({"format": "deephash-train/2"}, "config missing"),
    ([1, 2, 3], "holds a list"),
    ("hello", "holds a str"),
    ({"format": "other/1"}, "unknown format 'other/1'"),
    ({"format": "deephash-dsh/1", "config": {}, "bits": "16", "class_names": [], "model": {}}, "bits is a str"),
    ({"format": "deephash-dsh/1", "config": {}, "bits": 16, "class_names": [1], "model": {}}, "class_names are not"),
    ({"format": "deephash-dsh/1", "config": {}, "bits": 16, "class_names": [], "model": {"w": 1}}, "state dict"),
])
def test_payload_of_the_wrong_shape_is_refused_naming_the_file(tmp_path, payload, says):
    path = tmp_path / "odd.ckpt"
    write_raw(path, payload)
    with pytest.raises(CorruptFileError, match=says) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    code, out = cli("encode", path, "--images", tmp_path, "--out", tmp_path / "c.npz")
    assert_refused(code, out, str(path))


def test_valid_schema_but_unusable_contents_are_refused_naming_the_file(tmp_path, trained):
    good = load_checkpoint(trained)
    cases = {
        "config.ckpt": ({**good, "config": {**good["config"], "bits": "many"}}, "config|model cannot be rebuilt"),
        "method.ckpt": ({**good, "config": {**good["config"], "method": "zzz"}}, "invalid training config"),
        "keys.ckpt": ({**good, "config": {**good["config"], "colour": 1}}, "unknown config keys: colour"),
        "model.ckpt": ({**good, "model": {"w": torch.zeros(2)}}, "model cannot be rebuilt"),
        "shape.ckpt": ({**good, "model": {k: v[:1] for k, v in good["model"].items()}}, "model cannot be rebuilt"),
    }
    for name, (payload, says) in cases.items():
        write_raw(tmp_path / name, payload)
        with pytest.raises(CorruptFileError, match=says) as e:
            load_trained(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)
        assert "\n" not in str(e.value)
    write_raw(tmp_path / "state.ckpt", {**good, "optimizer": {"state": {}, "param_groups": "x"}})
    t = Trainer(TrainConfig(**{**load_trained(trained).config.to_dict(), "out": str(tmp_path / "r")}),
                load_source("digits")["all"].subset(np.arange(60)), progress=False)
    with pytest.raises(CorruptFileError, match="state.ckpt: its training state does not fit"):
        t.resume(tmp_path / "state.ckpt")


def test_every_saved_payload_is_plain_and_an_older_numpy_history_still_loads(tmp_path, trained):
    ckpt = load_checkpoint(trained)
    # the older trainer stored numpy float64 losses in the history; such a file loads (numpy's scalar
    # reconstructor only) and comes back as plain floats
    old = {**ckpt, "history": [{"epoch": 1, "step": np.int64(2), "loss": np.float64(0.5), "x": np.float32(1)}]}
    write_raw(tmp_path / "old.ckpt", old)
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    assert loaded["history"] == [{"epoch": 1, "step": 2, "loss": 0.5, "x": 1.0}]
    assert all(type(v) in (int, float) for v in loaded["history"][0].values())
    assert load_trained(tmp_path / "old.ckpt").config.bits == 8
    # saving converts numpy values, so what is written loads without numpy at all
    save_checkpoint(tmp_path / "new.ckpt", {**old, "extra": np.arange(3)})
    body = (tmp_path / "new.ckpt").read_bytes()[len(MAGIC) + 65:]
    plain = torch.load(io.BytesIO(body), weights_only=True)
    assert plain["history"][0]["loss"] == 0.5 and type(plain["history"][0]["loss"]) is float
    assert torch.equal(plain["extra"], torch.arange(3))
    assert plain["model"].keys() == ckpt["model"].keys()
    assert hasattr(plain["model"], "_metadata")  # state dict versions survive the conversion


def test_loader_errors_are_deephash_errors(tmp_path):
    with pytest.raises(DeephashError, match="not found"):
        load_checkpoint(tmp_path / "none.ckpt")


def test_cli_refuses_files_that_are_not_usable_checkpoints(tmp_path, trained):
    """The corpus of bad checkpoints, through ``encode`` and ``train --resume``: each refused naming the file,
    nothing written, the file unchanged."""
    imgs = image_folder(tmp_path / "imgs")
    data = trained.read_bytes()
    rng = np.random.default_rng(0)
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, "PNG")
    (tmp_path / "empty").mkdir()
    files = {
        "truncated.ckpt": (data[: len(data) // 2], "corrupt or truncated"),
        "header-only.ckpt": (data[:len(MAGIC) + 65], "corrupt or truncated"),
        "random.ckpt": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "is not a deephash checkpoint"),
        "zero.ckpt": (b"", "is not a deephash checkpoint"),
        "image.ckpt": (buf.getvalue(), "is not a deephash checkpoint"),
        "plain.pt": (None, "is not a deephash checkpoint"),
    }
    for name, (content, _) in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    cases = [(tmp_path / n, says) for n, (_, says) in files.items()]
    cases += [(tmp_path / "empty", "checkpoint not found"), (tmp_path / "none.ckpt", "checkpoint not found")]
    for path, says in cases:
        before = path.read_bytes() if path.is_file() else None
        for argv in (["encode", path, "--images", imgs, "--out", tmp_path / "c.npz"],
                     ["train", "--resume", path, "-q"]):
            code, out = cli(*argv)
            assert_refused(code, out, str(path))
            assert says in out, out
        assert not (tmp_path / "c.npz").exists()
        assert (path.read_bytes() if path.is_file() else None) == before


def test_cli_refuses_a_checkpoint_of_other_bits(tmp_path, trained):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(trained.read_bytes())
    before = (run / "last.ckpt").read_bytes()
    code, out = cli("train", "--resume", run, "--bits", "16", "-q")
    assert_refused(code, out, "holds a 8-bit model but this run is configured for 16 bits")
    assert (run / "last.ckpt").read_bytes() == before
    digits = load_source("digits")["all"].subset(np.arange(40))
    other = train(TrainConfig(bits=16, epochs=1, batch_size=20, threads=1, out=str(tmp_path / "b16")), digits,
                  progress=False).checkpoint
    imgs = image_folder(tmp_path / "imgs")
    assert cli("encode", trained, "--images", imgs, "--out", tmp_path / "c.npz", "-q")[0] == 0
    assert cli("index", "build", "--codes", tmp_path / "c.npz", "--out", tmp_path / "idx", "-q")[0] == 0
    code, out = cli("search", "--index", tmp_path / "idx", "--image", imgs / "0.png", "--checkpoint", other)
    assert_refused(code, out, str(other))
    assert "16-bit" in out
