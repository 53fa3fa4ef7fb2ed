"""Light commands answer without loading torch (or OpenCV, matplotlib, FAISS): the CLI imports lazily."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deephash.codes import CodesFile

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = r'''
import sys
from deephash.cli import app
code = 0
try:
    app(args=sys.argv[1:])
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
print("EXIT", code)
print("LOADED", ",".join(sorted(m for m in HEAVY if m in sys.modules)))
'''.replace("HEAVY", repr(("torch", "torchvision", "cv2", "matplotlib", "faiss", "sklearn", "pymilvus", "milvus_lite")))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("light")
    rng = np.random.default_rng(0)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 50)]
    CodesFile(rng.integers(0, 256, (50, 4), dtype=np.uint8), 32, labels=labels, class_names=list("abc")).save(d / "db.npz")
    CodesFile(rng.integers(0, 256, (5, 4), dtype=np.uint8), 32, labels=labels[:5], class_names=list("abc")).save(d / "q.npz")
    return d


def loaded(*args, exit_code: int = 0) -> list[str]:
    """The heavy modules a command (run in a fresh process) imported; the command must end with ``exit_code``
    (a command that crashes before reaching its work would otherwise look light)."""
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(SRC)))
    lines = p.stdout.strip().splitlines()
    assert len(lines) >= 2 and lines[-2].startswith("EXIT ") and lines[-1].startswith("LOADED"), p.stdout + p.stderr
    assert int(lines[-2].split()[1]) == exit_code, p.stdout + p.stderr
    last = lines[-1]
    return [m for m in last.split(" ", 1)[1].split(",") if m] if " " in last else []


def test_light_commands_never_import_torch(files):
    d = files
    assert loaded("--help") == []
    assert loaded("version") == []
    assert loaded("index", "build", "--codes", d / "db.npz", "--out", d / "idx") == []
    assert (d / "idx" / "manifest.json").is_file()
    assert loaded("index", "info", "--index", d / "idx") == []
    assert loaded("search", "--index", d / "idx", "--query", d / "q.npz", "-k", "3") == []
    assert loaded("search", "--database", d / "db.npz", "--query", d / "q.npz", "--radius", "4", "--json") == []
    assert loaded("evaluate", "--query", d / "q.npz", "--database", d / "db.npz", "--topk", "10") == []
    assert loaded("index", "info", d / "nowhere", exit_code=2) == []


def test_no_optional_engine_and_no_third_party_warning_on_normal_output(files):
    """milvus (pymilvus, milvus_lite) is imported only by an index that uses it, and warnings raised inside
    other packages (milvus_lite's pkg_resources deprecation) stay off a command's output; deephash's own show."""
    from deephash.retrieval import ImageIndex

    ImageIndex.from_codes(CodesFile.load(files / "db.npz")).save(files / "quiet")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("PYTHONWARNINGS", None)
    p = subprocess.run([sys.executable, "-m", "deephash", "index", "info", files / "quiet"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    probe = r"""
import sys, warnings
import deephash.index, deephash.retrieval
print("MILVUS", sorted(m for m in sys.modules if "milvus" in m and not m.startswith("deephash.")))
from deephash.cli import main
try:
    main(["version"])
except SystemExit:
    pass
warnings.warn_explicit("pkg_resources is deprecated as an API", UserWarning, "milvus_lite/__init__.py", 15,
                       module="milvus_lite")
warnings.warn_explicit("deephash's own warning", UserWarning, "deephash/x.py", 1, module="deephash.x")
"""
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0 and "MILVUS []" in p.stdout, p.stdout + p.stderr
    assert "pkg_resources" not in p.stderr and "deephash's own warning" in p.stderr, p.stderr


def test_logs_get_no_progress_bars(tmp_path):
    """Output that is not a terminal (a log, a pipe) gets the command's summary lines, not a line per update."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("DEEPHASH_PROGRESS", None)
    p = subprocess.run([sys.executable, "-m", "deephash", "demo", "--bits", "12", "--epochs", "2", "--out",
                        tmp_path / "demo"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    log = p.stdout + p.stderr
    assert "\r" not in log and "it/s" not in log and "Warning" not in log
    assert len(log.splitlines()) < 20 and "mAP" in log
    env["DEEPHASH_PROGRESS"] = "1"  # forced on: the bars are there
    p = subprocess.run([sys.executable, "-m", "deephash", "train", "--data", "digits", "--bits", "12", "--epochs", "1",
                        "--out", tmp_path / "t"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and "epoch 1/1" in p.stderr


def test_help_reads_at_80_columns_with_an_example():
    from typer.testing import CliRunner

    from deephash.cli import app

    runner = CliRunner()
    commands = [["demo"], ["encode"], ["evaluate"], ["iah-train"], ["iah-encode"], ["iah-demo"], ["search"], ["train"],
                ["index", "build"], ["index", "add"], ["index", "remove"], ["index", "info"]]
    for cmd in [[]] + commands:
        r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert r.exit_code == 0, (cmd, r.output)
        assert max(len(line) for line in r.output.splitlines()) <= 80, cmd
        assert "│" not in r.output and "╭" not in r.output  # no boxes
        if cmd:
            assert "Example:" in r.output and f"deephash {' '.join(cmd)}" in r.output, cmd
