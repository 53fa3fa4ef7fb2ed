"""Training settings that cannot give a sensible run are refused before training (TrainConfig.validate, the
engine), each with one error line naming the setting; a run whose loss or weights become NaN stops without
writing over the last good checkpoint."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deephash.cli import app
from deephash.data import load_source
from deephash.errors import DeephashError
from deephash.runs import TrainConfig
from deephash.train.trainer import Trainer

from corpus import assert_refused


def image_folder(root: Path, classes=("a", "b"), per_class=8) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-args")
    return image_folder(root / "two"), image_folder(root / "one", classes=("only",))


def run_train(data, out, *args):
    r = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(out), "--bits", "8", "--epochs", "2",
                                 "--batch-size", "8", "--threads", "1", "-q", *map(str, args)])
    return r.exit_code, r.output


BAD_FLAGS = [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "0"], "lr must be a finite number > 0"),
    (["--margin", "-5"], "margin must be a finite number > 0"),
    (["--margin", "nan"], "margin must be"),
    (["--alpha", "-1"], "alpha must be a finite number ≥ 0"),
    (["--seed", "-1"], "seed must be between 0"),
    (["--seed", str(2 ** 40)], "seed must be between 0"),
    (["--epochs", "0"], "epochs must be ≥ 1"),
    (["--iterations", "0"], "iterations must be ≥ 1"),
    (["--batch-size", "1"], "batch_size must be ≥ 2"),
    (["--weight-decay", "-0.1"], "weight_decay must be"),
    (["--threads", "-1"], "threads must be ≥ 0"),
    (["--image-size", "4"], "image_size 4 does not fit model 'dsh'"),
]


@pytest.mark.parametrize("flags, says", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_training_flag_is_refused(tmp_path, folders, flags, says):
    out = tmp_path / "run"
    assert_refused(*run_train(folders[0], out, *flags), says)
    assert not (out / "last.ckpt").exists()


@pytest.mark.parametrize("momentum", [1.0, -0.1, ".nan"])
def test_bad_momentum_in_a_config_file_is_refused(tmp_path, folders, momentum):
    (tmp_path / "c.yaml").write_text(f"momentum: {momentum}\n")
    assert_refused(*run_train(folders[0], tmp_path / "run", "--config", tmp_path / "c.yaml"),
                   "momentum must be a finite number in [0, 1)")


def test_out_that_is_a_file_is_refused_and_kept(tmp_path, folders):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert_refused(*run_train(folders[0], f), f"out {str(f)!r} is a file")
    assert_refused(*run_train(folders[0], f / "sub"), f"is inside {f}")
    assert f.read_text() == "mine"


def test_one_class_dataset_is_refused(tmp_path, folders):
    assert_refused(*run_train(folders[1], tmp_path / "run"), "1 class(es) with images")
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_diverging_run_stops_and_keeps_the_good_checkpoint(tmp_path, folders):
    out = tmp_path / "run"
    assert run_train(folders[0], out)[0] == 0
    good = (out / "last.ckpt").read_bytes()
    code, output = run_train(folders[0], out, "--lr", "1e30")  # a valid number that blows the weights up
    assert_refused(code, output, "training diverged: the loss is nan")
    assert str(out / "last.ckpt") in output
    assert (out / "last.ckpt").read_bytes() == good


def test_nan_weights_at_the_end_of_an_epoch_are_never_saved(tmp_path):
    """The loss is checked before each step; weights a last step of an epoch made NaN are checked before saving."""
    digits = load_source("digits")["all"].subset(np.arange(40))
    t = Trainer(TrainConfig(bits=8, epochs=1, batch_size=20, threads=1, out=str(tmp_path / "run")), digits,
                progress=False)
    step = t.optimizer.step

    def poisoned_step(*a, **k):
        step(*a, **k)
        if t.step == t.steps_per_epoch - 1:  # the last step of the epoch (t.step counts from 0 before it)
            next(t.model.parameters()).data.fill_(math.nan)

    t.optimizer.step = poisoned_step
    with pytest.raises(DeephashError, match="weights hold NaN or infinity after epoch 1"):
        t.fit()
    assert not (tmp_path / "run" / "last.ckpt").exists()
    assert not torch.isfinite(next(t.model.parameters())).all()
