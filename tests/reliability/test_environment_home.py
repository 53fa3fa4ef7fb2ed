"""Commands work for an account without a usable HOME (a service account: HOME=/nonexistent, no
NUMBA_CACHE_DIR, XDG_CACHE_HOME or DEEPHASH_CACHE), and files deephash writes get the mode a plain open
would give them, so another account can read an index someone else built.

Run as root these tests also run the commands as uid 65534 (``setpriv``), where a missing HOME really
cannot be written; as root alone HOME is set under a regular file, which not even root can create."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.utils.io import atomic_open, atomic_write

SRC = str(Path(__file__).resolve().parents[2] / "src")
NOBODY = 65534
CAN_SWITCH_USER = os.geteuid() == 0 and shutil.which("setpriv") is not None


def bare_env(home: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "DEEPHASH_CACHE", "HOME")}
    return {**env, "HOME": home, "PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"}


def run(args, env, as_nobody=False, cwd=None):
    prefix = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"] if as_nobody else []
    return subprocess.run([*prefix, sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def shared_dir():
    """A folder every account can read (pytest's own tmp folders are private to their owner)."""
    d = Path(tempfile.mkdtemp(prefix="deephash-env-"))
    d.chmod(0o755)
    old = os.umask(0o022)
    try:
        yield d
    finally:
        os.umask(old)
        shutil.rmtree(d, ignore_errors=True)


def users():
    return [False, True] if CAN_SWITCH_USER else [False]


def codes_and_index(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    cf = CodesFile(rng.integers(0, 256, (50, 2), dtype=np.uint8), 16, ids=np.arange(50))
    cf.save(root / "codes.npz")
    r = CliRunner().invoke(app, ["index", "build", "--codes", str(root / "codes.npz"), "--out", str(root / "idx"),
                                 "-q"])
    assert r.exit_code == 0, r.output
    return root / "codes.npz", root / "idx"


# runs CLI commands in one process (each interpreter start costs seconds); every one must exit 0
CHILD = """
import json, sys
from typer.testing import CliRunner
from deephash.cli import app
from deephash.data.cache import cache_dir
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and r.exception is None, (args, r.output, repr(r.exception))
    print(r.output.strip().splitlines()[-1])
print(cache_dir())
"""


@pytest.mark.parametrize("as_nobody", users(), ids=lambda n: "uid65534" if n else "this-user")
def test_commands_run_without_a_usable_home(shared_dir, as_nobody):
    codes, index = codes_and_index(shared_dir)
    if as_nobody:
        home = "/nonexistent"
    else:
        (shared_dir / "file").write_text("")
        home = str(shared_dir / "file" / "home")  # cannot be created, not even by root
    env = bare_env(home)
    r = run(["-m", "deephash", "version"], env, as_nobody, cwd=shared_dir)
    assert r.returncode == 0 and r.stdout.strip() and not r.stderr, r.stderr[-2000:]
    searches = [["search", "--database", str(codes), "--query", str(codes), "-k", "3", "--json"],
                ["search", "--index", str(index), "--query", str(codes), "-k", "3", "--json"]]
    r = run(["-c", CHILD, json.dumps(searches)], env, as_nobody, cwd=shared_dir)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["results"] for line in lines[:2]), r.stdout
    assert Path(lines[2]).is_dir() and not lines[2].startswith(home)


def test_kernels_fall_back_to_a_private_folder(tmp_path):
    from deephash.index.kernels import cache as kernels

    blocked = tmp_path / "file"
    blocked.write_text("")
    assert not kernels.private_dir(blocked / "cache")  # cannot be created
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    assert not kernels.private_dir(open_dir)  # others could plant compiled code there
    assert kernels.private_dir(tmp_path / "mine") and stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o700


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.bin", lambda fh: fh.write(b"x"))
        with atomic_open(tmp_path / "text.txt", "w") as fh:
            fh.write("x")
        (tmp_path / "kept.bin").write_bytes(b"old")
        (tmp_path / "kept.bin").chmod(0o640)
        atomic_write(tmp_path / "kept.bin", lambda fh: fh.write(b"new"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "text.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "kept.bin").stat().st_mode) == 0o640  # an existing file keeps its mode


@pytest.mark.skipif(not CAN_SWITCH_USER, reason="needs root and setpriv to act as another account")
def test_another_account_can_search_an_index_and_encode_with_a_checkpoint(shared_dir):
    from deephash.data import load_source
    from deephash.runs import TrainConfig
    from deephash.train.trainer import train

    codes, index = codes_and_index(shared_dir)
    ckpt = train(TrainConfig(bits=8, epochs=1, batch_size=20, threads=1, out=str(shared_dir / "run")),
                 load_source("digits")["all"].subset(np.arange(40)), progress=False).checkpoint
    files = [p for p in index.rglob("*") if p.is_file()] + [ckpt]
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o004 for p in files), [oct(p.stat().st_mode) for p in files]
    load = f"from deephash.runs import load_trained; print(load_trained({str(ckpt)!r}).config.bits)"
    searches = [["search", "--index", str(index), "--query", str(codes), "-k", "2", "--json"]]
    r = run(["-c", CHILD.replace("print(cache_dir())", load), json.dumps(searches)], bare_env("/nonexistent"),
            as_nobody=True)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "8", r.stderr[-2000:]
