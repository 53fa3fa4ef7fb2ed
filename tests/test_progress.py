"""Progress where there is no terminal (a log file, a pipe): a line every few seconds with count, rate and ETA,
nothing for a short loop, and tqdm bars kept for a terminal (``deephash.utils.progress``)."""

import numpy as np
import pytest

from deephash import DeephashError
from deephash.utils import progress


@pytest.fixture
def fake_clock(monkeypatch):
    """A clock the test moves by hand; stderr is not a terminal under pytest's capture."""
    now = [1000.0]
    monkeypatch.setattr(progress, "clock", lambda: now[0])
    monkeypatch.delenv("DEEPHASH_PROGRESS", raising=False)
    monkeypatch.delenv(progress.INTERVAL_ENV, raising=False)
    return now


def test_a_long_loop_logs_count_rate_and_eta_lines(fake_clock, capsys):
    for _ in progress.tqdm(range(100), desc="up", unit=" img"):
        fake_clock[0] += 0.5  # 2 images/s: 50 s in all, a line every INTERVAL (15) s
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines == ["up: 30/100 (30%), 2.0 img/s, 0:15 elapsed, ETA 0:35",
                     "up: 60/100 (60%), 2.0 img/s, 0:30 elapsed, ETA 0:20",
                     "up: 90/100 (90%), 2.0 img/s, 0:45 elapsed, ETA 0:05",
                     "up: 100/100 done in 0:50, 2.0 img/s"]
    assert "\r" not in err and "it/s" not in err


def test_updates_postfix_and_slow_rates(fake_clock, capsys, monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "30")
    with progress.tqdm(total=10, desc="dsh training", unit="epoch") as bar:
        for epoch in range(10):
            fake_clock[0] += 40  # one epoch: 40 s, longer than the interval: a line per epoch, with its loss
            bar.set_postfix(loss=f"{1 / (epoch + 1):.4f}")
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[0] == ("dsh training: 1/10 (10%), 40.0 s per epoch, 0:40 elapsed, ETA 6:00; "
                                             "loss=1.0000")
    assert lines[-2].endswith("ETA 0:00; loss=0.1000") and lines[-1].startswith("dsh training: 10/10 done in 6:40")


def test_short_quiet_and_unsized_loops(fake_clock, capsys, monkeypatch):
    for _ in progress.tqdm(range(1000), desc="short"):
        fake_clock[0] += 0.001  # 1 s in all: no line, not even a closing one
    for _ in progress.tqdm(range(100), desc="quiet", disable=True):
        fake_clock[0] += 1
    assert capsys.readouterr().err == ""
    for _ in progress.tqdm(iter(range(40)), desc="read x.tar.gz", unit=" files"):
        fake_clock[0] += 1  # no length: count and rate, no ETA
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "read x.tar.gz: 15, 1.0 files/s, 0:15 elapsed" and "ETA" not in "".join(lines)
    monkeypatch.setenv("DEEPHASH_PROGRESS", "0")  # hides everything
    for _ in progress.tqdm(range(100), desc="hidden"):
        fake_clock[0] += 1
    assert capsys.readouterr().err == ""


def test_a_terminal_keeps_tqdm_bars(monkeypatch):
    monkeypatch.setenv("DEEPHASH_PROGRESS", "1")
    bar = progress.tqdm(range(3), desc="x")
    assert not isinstance(bar, progress.LogProgress) and not bar.disable
    bar.close()
    monkeypatch.delenv("DEEPHASH_PROGRESS")
    assert isinstance(progress.tqdm(range(3)), progress.LogProgress)  # pytest's stderr is not a terminal


def test_bad_interval_is_refused(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    monkeypatch.delenv("DEEPHASH_PROGRESS", raising=False)
    with pytest.raises(DeephashError, match=progress.INTERVAL_ENV):
        progress.tqdm(range(3))


def test_training_logs_epochs_with_their_loss(tmp_path, monkeypatch, capsys):
    """The training engine's loops go through the same helper: a log shows each epoch's loss and an ETA."""
    from deephash.data import load_source
    from deephash.runs import TrainConfig
    from deephash.train.trainer import train

    monkeypatch.delenv("DEEPHASH_PROGRESS", raising=False)
    monkeypatch.setenv(progress.INTERVAL_ENV, "1e-9")  # every update writes a line
    data = load_source("digits")["all"].subset(np.arange(80))
    train(TrainConfig(bits=8, epochs=2, batch_size=40, threads=1, out=str(tmp_path / "run")), data, progress=True)
    err = capsys.readouterr().err
    assert "dsh training: 1/2 (50%)" in err and "ETA" in err and "loss=" in err
    assert "dsh epoch 2/2: 2/2 (100%)" in err and ("batch/s" in err or "s per batch" in err)
    assert "\r" not in err
    train(TrainConfig(bits=8, epochs=1, batch_size=40, threads=1, out=str(tmp_path / "q")), data, progress=False)
    assert capsys.readouterr().err == ""  # asked to be quiet
