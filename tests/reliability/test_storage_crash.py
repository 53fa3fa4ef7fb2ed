"""Crash and concurrency tests of index folders with real processes.

A "zygote" process imports the CLI once and forks one child per ``deephash index add|remove`` (a real process
running the real command, without paying the import each time); the test SIGKILLs children at seeded random
moments, or runs them side by side, then checks the folder: it loads, passes its checksums and holds exactly
the old or the new contents."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deephash.codes import CodesFile
from deephash.errors import DeephashError
from deephash.index import CategoryIndex, HammingIndex
from deephash.index.storage import IndexLockedError, index_lock
from deephash.retrieval import open_index, update_index

from forkserver import SRC, ForkServer
from save_pause import ENV as PAUSE_ENV

BITS = 64
BASE = 20_000  # codes in the index: big enough that a save takes a measurable while

class Zygote(ForkServer):
    def run(self, argv, env=None) -> tuple[dict, float, str]:
        t0 = time.monotonic()
        pid, log = self.spawn(argv, env)
        res = self.wait(pid)
        return res, time.monotonic() - t0, log.read_text()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    # one per module: the CLI import costs seconds; what the commands import lazily is preloaded, not timed per run
    # save_pause: each save pauses for $DEEPHASH_TEST_SAVE_PAUSE seconds before its manifest swap (0: none)
    z = Zygote(tmp_path_factory.mktemp("logs"), preload=("deephash.codes", "deephash.data", "deephash.retrieval",
                                                        "save_pause"),
               env={"PYTHONPATH": os.pathsep.join([SRC, str(Path(__file__).resolve().parent)])})
    yield z
    z.close()


def batch(path: Path, start: int, n: int, seed: int) -> CodesFile:
    rng = np.random.default_rng(seed)
    cf = CodesFile(codes=rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8), bits=BITS,
                   ids=np.arange(start, start + n), paths=[f"img/{start + i}.png" for i in range(n)])
    cf.save(path)
    return cf


def base_index(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    cf = batch(tmp_path / "base.npz", 0, BASE, 0)
    path = tmp_path / "idx"
    index = HammingIndex(BITS)
    index.add(cf.codes, ids=cf.ids, metadata=cf.metadata_rows())
    index.save(path)
    return path, cf.ids.copy(), cf.codes.copy()


def state(path: Path) -> tuple[np.ndarray, np.ndarray, HammingIndex]:
    index = HammingIndex.load(path, mmap=False)  # verifies sizes and checksums
    return index.ids.copy(), index.codes.copy(), index


def same(a: tuple, b: tuple) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def check_metadata(index: HammingIndex, ids: np.ndarray, present: bool) -> None:
    md = index.get_metadata(ids)
    assert all((m is not None and m["path"] == f"img/{i}.png") if present else m is None for m, i in zip(md, ids))


def kill_trials(zygote, path, rng, commands, timing) -> dict:
    """Run each (argv, old, new, changed ids) with a SIGKILL after a random delay; check old-or-new after each."""
    outcomes = {"old": 0, "new": 0, "finished": 0}
    for argv, old, new, changed in commands:
        pid, log = zygote.spawn(argv)
        time.sleep(rng.uniform(0, timing))
        zygote.kill(pid)
        res = zygote.wait(pid)
        assert res["killed"] or res["code"] == 0, log.read_text()
        got = state(path)
        if same(got[:2], old):
            outcome, has_new = "old", False
        else:
            assert same(got[:2], new), "index holds neither the old nor the new contents"
            outcome, has_new = "new", True
        check_metadata(got[2], changed, present=has_new == (argv[1] == "add"))
        outcomes[outcome if res["killed"] else "finished"] += 1
    return outcomes


# a few kills in the default suite; the full loop with the slow tests (.ci/run runs both)
@pytest.mark.parametrize("wanted", [5, pytest.param(20, marks=pytest.mark.slow)])
def test_sigkill_during_index_add_and_remove_leaves_old_or_new(tmp_path, zygote, wanted):
    path, ids, codes = base_index(tmp_path)
    rng = np.random.default_rng(16)
    took = {"add": [], "remove": []}
    for n in range(3):  # warm up, then time each command (the fastest run: the machine may be busy)
        batch(tmp_path / f"b{n}.npz", 100_000 + 100 * n, 50, n)
        for cmd, extra in (("add", ["--codes", str(tmp_path / f"b{n}.npz"), "--keep-ids"]),
                           ("remove", ["--ids", f"{100_000 + 100 * n}"])):
            res, seconds, out = zygote.run(["index", cmd, "--index", str(path), *extra])
            assert res["code"] == 0, out
            took[cmd].append(seconds)
    took = {cmd: 0.9 * min(t) for cmd, t in took.items()}
    cur = state(path)[:2]
    assert len(cur[0]) == BASE + 147

    most = 3 * wanted  # real kills wanted (a run may finish before its kill), at most this many runs
    outcomes = {}
    for cmd in ("add", "remove"):
        got = outcomes[cmd] = {"old": 0, "new": 0, "finished": 0}
        i = 0
        while got["old"] + got["new"] < wanted and i < most:
            i += 1
            if cmd == "add":
                cf = batch(tmp_path / f"a{i}.npz", 200_000 + 1000 * i, 50, i)
                argv = ["index", "add", "--index", str(path), "--codes", str(tmp_path / f"a{i}.npz"), "--keep-ids"]
                new, changed = (np.concatenate([cur[0], cf.ids]), np.concatenate([cur[1], cf.codes])), cf.ids
            else:
                changed = rng.choice(cur[0], 10, replace=False)
                keep = ~np.isin(cur[0], changed)
                argv = ["index", "remove", "--index", str(path), "--ids", ",".join(map(str, changed))]
                new = (cur[0][keep], cur[1][keep])
            o = kill_trials(zygote, path, rng, [(argv, cur, new, changed)], took[cmd])
            for k in o:
                got[k] += o[k]
            cur = state(path)[:2]  # the next run starts from whatever this one left

    print(f"\nSIGKILL index add: {outcomes['add']}; index remove: {outcomes['remove']}; "
          f"commands took {took['add']:.2f} / {took['remove']:.2f} s")
    for got in outcomes.values():
        assert got["old"] + got["new"] >= wanted and got["old"]
    # A killed writer's lock died with it, and its orphaned files are collected by the next save.
    cf = batch(tmp_path / "last.npz", 900_000, 5, 99)
    res, _, out = zygote.run(["index", "add", "--index", str(path), "--codes", str(tmp_path / "last.npz"), "--keep-ids",
                              "--lock-timeout", "5"])
    assert res["code"] == 0, out
    assert np.isin(cf.ids, state(path)[0]).all()
    assert len(list(path.glob("codes.*.npy"))) == 2 and not list(path.glob(".*.tmp"))


def test_two_concurrent_adds_are_serialised_and_both_kept(tmp_path, zygote):
    path, ids, _ = base_index(tmp_path)
    a, b = batch(tmp_path / "a.npz", 500_000, 30, 1), batch(tmp_path / "b.npz", 600_000, 30, 2)
    env = {PAUSE_ENV: "0.4"}  # each holds the lock a while: the two surely overlap
    runs = [zygote.spawn(["index", "add", "--index", str(path), "--codes", str(tmp_path / n), "--keep-ids"], env)
            for n in ("a.npz", "b.npz")]
    results = [zygote.wait(pid) for pid, _ in runs]
    assert [r["code"] for r in results] == [0, 0], [log.read_text() for _, log in runs]
    got = state(path)
    assert len(got[0]) == BASE + 60 and np.isin(np.concatenate([a.ids, b.ids]), got[0]).all()
    check_metadata(got[2], np.concatenate([a.ids, b.ids]), present=True)


def test_searches_during_concurrent_adds_see_a_consistent_index(tmp_path, zygote):
    path, ids, codes = base_index(tmp_path)
    for i in range(4):
        batch(tmp_path / f"c{i}.npz", 700_000 + 100 * i, 20, i)
    counts = {BASE + 20 * i for i in range(5)}
    errors: list = []

    def writer():
        for i in range(4):
            res, _, out = zygote.run(["index", "add", "--index", str(path), "--codes", str(tmp_path / f"c{i}.npz"),
                                      "--keep-ids"])
            if res["code"]:
                errors.append(out)

    t = threading.Thread(target=writer)
    t.start()
    rounds, seen, deadline = 0, set(), time.monotonic() + 60
    q = codes[:3]
    while (t.is_alive() or rounds < 5) and rounds < 400 and time.monotonic() < deadline:
        index = HammingIndex.load(path) if rounds % 2 else open_index(path).semantic
        assert len(index) in counts
        D, I = index.search(q, 3)
        assert (D[:, 0] == 0).all() and (I[:, 0] == ids[:3]).all()
        found = I[I >= 0]
        assert all(m is not None for m in index.get_metadata(found))
        seen.add(len(index))
        rounds += 1
    t.join()
    assert not errors, errors
    assert len(HammingIndex.load(path)) == BASE + 80
    print(f"\n{rounds} load+search rounds during 4 adds, counts seen: {sorted(seen)}")


def test_index_lock_is_reentrant_and_excludes_other_threads(tmp_path):
    with index_lock(tmp_path / "idx"):
        with index_lock(tmp_path / "idx", timeout=0):  # same thread: re-entrant
            pass
        box = []
        th = threading.Thread(target=lambda: box.append(_try_lock(tmp_path / "idx")))
        th.start()
        th.join()
        assert box == ["locked"]
    assert _try_lock(tmp_path / "idx") == "ok"


def _try_lock(path) -> str:
    try:
        with index_lock(path, timeout=0.1):
            return "ok"
    except IndexLockedError:
        return "locked"


def test_iah_folder_has_one_lock_and_update_keeps_parts_together(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "iah"
    semantic = HammingIndex(32)
    semantic.add(rng.integers(0, 256, (6, 4), dtype=np.uint8), ids=np.arange(6))
    semantic.save(path)
    cat = CategoryIndex(32, ["cat", "dog"])
    cat.add(np.arange(6), rng.integers(0, 256, (6, 2, 4), dtype=np.uint8), np.eye(2, dtype=bool)[np.arange(6) % 2])
    cat.save(path / "category")
    with open(path / ".lock", "a+") as fh:  # another process's writer holds the folder
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(IndexLockedError, match=f"index {path} is locked"):
            with update_index(path, timeout=0.2):
                pass
    stale = open_index(path)
    with update_index(path) as index:
        index.remove([1, 2])
    assert len(open_index(path)) == 4 and len(open_index(path).category) == 4
    with pytest.raises(DeephashError, match="changed on disk"):  # a stale copy cannot overwrite the update
        stale.remove([3])
        stale.save()
    stale = open_index(path)
    other = open_index(path)
    with other.update():
        other.remove([0])
    with stale.update():  # update() reloads first, so nothing is lost
        stale.remove([5])
    again = open_index(path)
    assert sorted(again.semantic.ids.tolist()) == [3, 4] and len(again.category) == 2


def test_legacy_iah_folder_updates_in_place(tmp_path):
    """Folders of the former iah-encode (iah.json + semantic/ + category/) update in place under the root lock."""
    rng = np.random.default_rng(1)
    path = tmp_path / "old"
    semantic = HammingIndex(32)
    semantic.add(rng.integers(0, 256, (4, 4), dtype=np.uint8), ids=np.arange(4))
    semantic.save(path / "semantic")
    cat = CategoryIndex(32, ["cat", "dog"])
    cat.add(np.arange(4), rng.integers(0, 256, (4, 2, 4), dtype=np.uint8), np.eye(2, dtype=bool)[np.arange(4) % 2])
    cat.save(path / "category")
    (path / "iah.json").write_text(json.dumps({"checkpoint": None, "threshold": 0.5}))
    with update_index(path) as index:
        index.remove([0])
    again = open_index(path)
    assert again.semantic.ids.tolist() == [1, 2, 3] and len(again.category) == 3
    assert (path / ".lock").exists() and not (path / "manifest.json").exists()


def test_hamming_index_updates_from_threads_are_all_kept(tmp_path):
    path = tmp_path / "idx"
    HammingIndex(32).save(path)
    rng = np.random.default_rng(3)

    def add(i):
        with HammingIndex.update(path, timeout=30) as index:
            index.add(rng.integers(0, 256, (2, 4), dtype=np.uint8), ids=[10 * i, 10 * i + 1])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(HammingIndex.load(path).ids.tolist()) == sorted(j for i in range(6) for j in (10 * i, 10 * i + 1))
