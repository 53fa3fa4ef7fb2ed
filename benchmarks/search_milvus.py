"""The Milvus rows of the search benchmark (``python benchmarks/search.py --milvus 100K,1M``).

Milvus Lite (embedded, a local file, ``BIN_FLAT``/``HAMMING``) next to deephash's in-process engines and
FAISS on the same random 64-bit codes, each code inserted with a path and a label as metadata. Rows:
insert (build) time, the memory the codes take (Milvus Lite server RSS and file size; deephash's process
RSS), k-NN and radius QPS with exactness against a numpy brute force. ``BIN_IVF_FLAT`` needs a Milvus
server: Milvus Lite refuses every index type but ``BIN_FLAT``, which the run reports.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from deephash.index import HammingIndex
from deephash.index.engines import milvus as mv


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lite_pid(db: str) -> int | None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"/milvus") and db.encode() in cmd:
            return int(pid)
    return None


def run(sizes, nq: int, nsample: int, seed: int, timed, brute, check_knn, check_range, rows: list) -> None:
    rng = np.random.default_rng(seed)
    for n in sizes:
        db = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        q = rng.integers(0, 256, (nq, 8), dtype=np.uint8)
        ref = brute(q[:nsample], db)
        meta = [{"path": f"images/{i:09d}.jpg", "labels": [str(i % 10)]} for i in range(n)]
        name = f"milvus random-64-{n:,}"
        with tempfile.TemporaryDirectory(prefix="dh-milvus-") as tmp:
            uri = str(Path(tmp) / "bench.db")
            eng = mv.MilvusEngine(64, uri=uri, collection="bench")
            eng.progress = False
            t = time.perf_counter()
            eng.build(db[:0], np.arange(0))
            pid = lite_pid(uri)
            rss0 = rss_mb(pid)
            eng.add(db, np.arange(n), meta)
            eng.client().flush("bench")
            insert = time.perf_counter() - t
            # deephash in-process: the same codes and metadata, saved, then loaded (codes and ids in memory, the
            # metadata in its SQLite file) with the MIH tables built
            t = time.perf_counter()
            built = HammingIndex(64)
            built.add(db, metadata=meta)
            built.save(Path(tmp) / "idx")
            del built
            base = rss_mb()
            ours = HammingIndex.load(Path(tmp) / "idx", mmap=False)
            ours._engine("mih")
            ours_build = time.perf_counter() - t
            ours_mb = rss_mb() - base
            meta_mb = sum(f.stat().st_size for f in (Path(tmp) / "idx").glob("meta.*")) / 2**20
            fl = faiss.IndexBinaryFlat(64)
            fl.add(db)
            qk = q[: min(nq, 100)]
            print(f"\n## {name}: n={n:,} bits=64 queries knn={len(qk)} range={nq}  load {os.getloadavg()[0]:.2f}",
                  flush=True)
            eng.search(qk[:2], 10)
            lite_mb = rss_mb(pid) - rss0
            disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file() and "idx" not in f.parts) / 2**20
            print(f"  build     Milvus Lite BIN_FLAT insert+flush {insert:7.1f}s ({n / insert:,.0f} codes/s); "
                  f"server RSS "
                  f"+{lite_mb:,.0f} MB ({lite_mb * 2**20 / n:,.0f} B/code), files {disk:,.0f} MB "
                  f"({disk * 2**20 / n:,.0f} B/code)", flush=True)
            print(f"  build     deephash in-process add+save+load+MIH {ours_build:7.1f}s; RSS +{ours_mb:,.0f} MB "
                  f"({ours_mb * 2**20 / n:,.0f} B/code: codes, ids, MIH tables), metadata file {meta_mb:,.0f} MB "
                  f"({meta_mb * 2**20 / n:,.0f} B/code)", flush=True)
            rows.append((name, "build", "milvus-lite BIN_FLAT", n / insert, True))

            def row(task, engine, qps, exact, base=None):
                ratio = f"{qps / base:8.2f}x" if base else "        "
                print(f"  {task:10s} {engine:26s} {qps:12.1f} QPS {ratio}  exact={exact}", flush=True)
                rows.append((name, task, engine, qps, exact))

            for k in (10, 100):
                qf, (D, _) = timed(lambda x: fl.search(x, k), qk)
                row(f"knn k={k}", "faiss IndexBinaryFlat", qf, check_knn(D, ref, k))
                qo, (D, _) = timed(lambda x: ours.search(x, k), qk)
                row(f"knn k={k}", "deephash auto", qo, check_knn(D, ref, k), qf)
                qm, (D, _) = timed(lambda x: eng.search(x, k), qk)
                row(f"knn k={k}", "milvus-lite BIN_FLAT", qm, check_knn(D, ref, k), qf)
            for r in (0, 2):
                qo, (lims, _, I) = timed(lambda x: ours.range_search(x, r), q)
                row(f"range r<={r}", "deephash auto", qo, check_range(lims, I, ref, r))
                qm, (lims, _, I) = timed(lambda x: eng.range_search(x, r), q)
                row(f"range r<={r}", "milvus-lite BIN_FLAT", qm, check_range(lims, I, ref, r), qo)
            try:
                mv.MilvusEngine(64, uri=uri, collection="ivf", index_type="BIN_IVF_FLAT").build(db[:0], np.arange(0))
                print("  BIN_IVF_FLAT: accepted (not measured here)")
            except Exception as e:  # Milvus Lite: "local mode only support BIN_FLAT"
                print(f"  knn        milvus-lite BIN_IVF_FLAT   not available: {str(e).split(': ', 1)[-1][:100]}")
            ours = fl = None  # frees them (a del would make the lambdas above read as undefined names to ruff)
            mv.close_clients()
