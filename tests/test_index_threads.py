"""Many threads searching one HammingIndex while another adds and removes codes.

Each search must be exact for ONE state of the index (the snapshot it took): the writer counts its finished
operations, so a search that started after ``a`` and ended after ``b`` of them saw one of the states a .. b+1.
"""

import sys
import threading
import time

import numpy as np
import pytest

from deephash.codes import hamming_distances
from deephash.index import HammingIndex
from deephash.index.engines import SnapshotEngine

N0, BITS, K, R = 25_000, 64, 10, 3


def _states(rng, ops):
    """The writer's operations and every state they pass through, as (codes, ids) in insertion order."""
    codes = rng.integers(0, 256, (N0, BITS // 8), dtype=np.uint8)
    ids = np.arange(N0, dtype=np.int64)
    states, plan, next_id = [(codes, ids)], [], N0
    for j in range(ops):
        if j % 2 == 0:
            new = rng.integers(0, 256, (400, BITS // 8), dtype=np.uint8)
            new_ids = np.arange(next_id, next_id + 400, dtype=np.int64)
            next_id += 400
            plan.append(("add", new, new_ids))
            codes, ids = np.concatenate([codes, new]), np.concatenate([ids, new_ids])
        else:
            gone = rng.choice(ids, 300, replace=False)
            plan.append(("remove", gone, None))
            keep = ~np.isin(ids, gone)
            codes, ids = codes[keep], ids[keep]
        states.append((codes, ids))
    return states, plan


def _near(rng, codes, n):
    """Queries a bit or two away from some of the given codes, so results change when those come or go."""
    q = codes[rng.choice(len(codes), n, replace=False)].copy()
    rows = np.arange(n)
    for _ in range(2):
        q[rows, rng.integers(0, BITS // 8, n)] ^= (1 << rng.integers(0, 8, n)).astype(np.uint8)
    return q


def _reference(q, codes, ids):
    d = hamming_distances(q, codes)
    order = np.lexsort((np.broadcast_to(np.arange(len(ids)), d.shape), d), axis=1)  # ties: insertion order
    knn = np.take_along_axis(d, order[:, :K], 1), ids[order[:, :K]]
    rng_rows = [(row[o][row[o] <= R], ids[o][row[o] <= R]) for row, o in zip(d, order)]
    return knn, rng_rows


def _matches(kind, out, ref):
    (kd, ki), rows = ref
    if kind == "knn":
        return np.array_equal(out[0], kd) and np.array_equal(out[1], ki)
    lims, D, I = out
    return len(lims) == len(rows) + 1 and all(
        np.array_equal(D[lims[i]:lims[i + 1]], d) and np.array_equal(I[lims[i]:lims[i + 1]], i_)
        for i, (d, i_) in enumerate(rows))


@pytest.mark.parametrize("engine", ["flat", "mih"])
def test_concurrent_readers_and_one_writer_see_consistent_snapshots(engine, monkeypatch):
    rng = np.random.default_rng(0)
    states, plan = _states(rng, 20)
    added = np.concatenate([p[1] for p in plan if p[0] == "add"])
    removed = states[0][0][np.isin(states[0][1], np.concatenate([p[1] for p in plan if p[0] == "remove"]))]
    q = np.concatenate([_near(rng, added, 12), _near(rng, removed, 12), _near(rng, states[0][0], 8)])
    index = HammingIndex(BITS, engine=engine)
    index.add(states[0][0], ids=states[0][1])
    index.search(q, K), index.range_search(q, R)  # compile the kernels and build the engine before the race
    build = SnapshotEngine.build

    def slow_build(self, codes, ids):  # builds take a while (MIH's, at millions of codes) and vary
        time.sleep(float(np.random.default_rng().uniform(0, 0.02)))
        build(self, codes, ids)
    monkeypatch.setattr(SnapshotEngine, "build", slow_build)
    done, progress, records, errors = threading.Event(), [0], [], []

    def writer():
        try:
            for op, a, b in plan:
                time.sleep(0.02)
                index.add(a, ids=b) if op == "add" else index.remove(a)
                progress[0] += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            done.set()

    def reader(t):
        try:
            n = 0
            while not done.is_set() or n < 3:
                kind = "knn" if (n + t) % 2 == 0 else "range"
                before = progress[0]
                out = index.search(q, K) if kind == "knn" else index.range_search(q, R)
                records.append((kind, before, progress[0], out))
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(8)] + [threading.Thread(target=writer)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads every few bytecodes: races in short windows show up
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    refs = [_reference(q, c, i) for c, i in states]
    bad = [(kind, a, b) for kind, a, b, out in records
           if not any(_matches(kind, out, refs[s]) for s in range(a, min(b + 1, len(states) - 1) + 1))]
    assert len(index) == len(states[-1][1])
    assert len({a for _, a, _, _ in records}) > len(plan) // 2  # the searches did overlap the writes
    assert not bad, f"{len(bad)} of {len(records)} searches match no state they could have seen: {bad[:5]}"


def test_concurrent_first_searches_build_each_engine_once(monkeypatch):
    """Threads that find an engine missing wait for one build (a large MIH build takes seconds)."""
    builds = []
    build = SnapshotEngine.build

    def counted(self, codes, ids):
        builds.append(self.name)
        time.sleep(0.05)
        build(self, codes, ids)
    monkeypatch.setattr(SnapshotEngine, "build", counted)
    rng = np.random.default_rng(1)
    index = HammingIndex(BITS, engine="mih")
    index.add(rng.integers(0, 256, (3000, BITS // 8), dtype=np.uint8))
    q = rng.integers(0, 256, (4, BITS // 8), dtype=np.uint8)
    start = threading.Barrier(8)
    results = []

    def search():
        start.wait()
        results.append(index.search(q, 5))
    threads = [threading.Thread(target=search) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert builds == ["mih"] and len(results) == 8
    assert all(np.array_equal(r[1], results[0][1]) for r in results)
    index.add(q)  # a new snapshot: built again, once
    index.search(q, 5), index.range_search(q, 3)
    assert builds == ["mih", "mih"]
