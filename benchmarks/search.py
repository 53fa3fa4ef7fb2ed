"""Search throughput of deephash's HammingIndex vs FAISS binary indexes, with exactness checks.

Not a test: run by hand, e.g.
    python benchmarks/search.py                # 1M and 10M codes, 100 queries
    python benchmarks/search.py --quick        # < 1 minute
    python benchmarks/search.py --sizes 1M --queries 200
    python benchmarks/search.py --milvus 100K,1M   # Milvus Lite rows only (needs deephash[milvus])
    python benchmarks/search.py --sizes 1M,10M --only learned --learned runs/demo/48bits   # MIH on learned codes

Every row is checked against a numpy brute force on a sample of queries (same distance
multiset per query for k-NN; same id set for radius search). The load average is printed
because the machine may be shared; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import faiss  # noqa: E402

from deephash.codes import hamming_distances  # noqa: E402
from deephash.index import HammingIndex  # noqa: E402


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KM" else s) * mult)


def random_codes(rng, n, bits):
    return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)


def clustered_codes(rng, n, nq, bits, centres):
    """Learned-code lookalike: cluster centres with each bit flipped w.p. 1/16 (about bits/16 flips)."""
    c = rng.integers(0, 256, (centres, bits // 8), dtype=np.uint8)

    def draw(m):
        noise = rng.integers(0, 256, (m, bits // 8), dtype=np.uint8)
        for _ in range(3):
            noise &= rng.integers(0, 256, (m, bits // 8), dtype=np.uint8)
        return c[rng.integers(0, centres, m)] ^ noise

    return draw(n), draw(nq)


def learned_codes(rng, folder: Path, n: int):
    """Real codes from a trained model (``query.npz``/``database.npz`` of ``deephash encode`` or
    ``deephash demo``), the database replicated to ``n`` with about 2 random bit flips per copy."""
    from deephash.codes import CodesFile

    q, db = CodesFile.load(folder / "query.npz"), CodesFile.load(folder / "database.npz")
    base = db.codes[rng.integers(0, len(db), n)]
    flip_p = 2.0 / db.bits
    bits01 = rng.random((n, db.bits)) < flip_p
    noise = np.packbits(bits01, axis=1)
    return base ^ noise, q.codes, db.index_bits


def brute(q, db):
    """Exact distances of a few queries to all codes, chunked to bound memory."""
    return np.concatenate([hamming_distances(q, db[s : s + 500_000]) for s in range(0, len(db), 500_000)], axis=1)


def timed(fn, q, min_seconds=1.0, max_runs=5):
    """QPS of the best of several runs (one at least, more while the total stays under ``min_seconds``):
    a single short run (2000 radius queries take about a millisecond) mostly measures the machine's
    noise. FAISS and deephash rows are timed the same way."""
    fn(q[:2])  # warm up (JIT, lazy table builds)
    best, total, runs = float("inf"), 0.0, 0
    while runs < max_runs and (runs == 0 or total < min_seconds):
        t = time.perf_counter()
        out = fn(q)
        dt = time.perf_counter() - t
        best, total, runs = min(best, dt), total + dt, runs + 1
    return len(q) / best, out


def check_knn(D, ref, k):
    want = np.sort(ref, axis=1)[:, :k]
    return bool((np.sort(D[: len(ref)], axis=1) == want).all())


def knn_recall(D, ref, k):
    """Approximate k-NN: the share of the exact k nearest distances recovered (as multisets, so any
    of several codes tied at a distance counts), averaged over the checked queries."""
    want = np.sort(ref, axis=1)[:, :k]
    hits = 0
    for got, exact in zip(D[: len(ref)], want):
        vals, counts = np.unique(got[got >= 0], return_counts=True)
        evals, ecounts = np.unique(exact, return_counts=True)
        common = np.intersect1d(vals, evals)
        hits += sum(min(counts[vals == v][0], ecounts[evals == v][0]) for v in common)
    return hits / (k * len(want))


def check_range(lims, I, ref, r):
    for i in range(len(ref)):
        got = np.sort(I[lims[i] : lims[i + 1]])
        if not np.array_equal(got, np.flatnonzero(ref[i] <= r)):
            return False
    return True


def restart_rows(name, index, q, rows):
    """The first search after ``HammingIndex.load`` of a saved index, i.e. after a restart: saved without its
    MIH tables (as before they were stored: the first search builds them) and with them (load restores
    them). The load itself (checksums included) is timed apart. A small index goes through the same steps
    first: the kernels' variants for memory-mapped (read-only) arrays compile once per machine (numba's
    disk cache), not once per restart."""
    warm = HammingIndex(index.bits)
    warm.add(index.codes[:30_000])
    with tempfile.TemporaryDirectory(prefix="deephash-bench-") as tmp:
        for label, tables in (("tables rebuilt", False), ("tables stored", True)):
            warm.save(Path(tmp) / "warm", tables=tables)
            HammingIndex.load(Path(tmp) / "warm").search(q[:2], 10)
        for label, tables in (("tables rebuilt", False), ("tables stored", True)):
            path = Path(tmp) / label.replace(" ", "-")
            index.save(path, tables=tables)
            t = time.perf_counter()
            loaded = HammingIndex.load(path)
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            loaded.search(q[:1], 10)
            first = time.perf_counter() - t
            t = time.perf_counter()
            loaded.search(q[1:2], 10)
            second = time.perf_counter() - t
            print(f"  restart    {label:22s} load {load_s:6.2f} s  first 10-NN query {first * 1e3:9.1f} ms  "
                  f"(next {second * 1e3:.2f} ms)", flush=True)
            rows.append((name, "restart", label, first, True))
            del loaded


def run_dataset(name, db, q, ks, radii, nsample, rows, nq_knn, nq_range=None, ivf_nprobe=0, restart=False):
    n, bits = len(db), db.shape[1] * 8
    sample = q[:nsample]
    ref = brute(sample, db)
    ours = HammingIndex(bits)
    ours.add(db)
    t = time.perf_counter()
    ours._engine("mih")
    build = time.perf_counter() - t
    fl = faiss.IndexBinaryFlat(bits)
    fl.add(db)
    mih = ours._engine("mih")
    nhash = mih.m
    b = min(int(mih.widths.min()), 24)
    mh = faiss.IndexBinaryMultiHash(bits, nhash, b)
    mh.add(db)
    print(f"\n## {name}: n={n:,} bits={bits} queries knn={nq_knn} range={len(q[:nq_range])}  (MIH m={mih.m}, build {build:.1f}s; "
          f"FAISS MultiHash nhash={nhash} b={b} nflip=r//nhash)  load {os.getloadavg()[0]:.2f}", flush=True)

    def row(task, engine, qps, exact, base=None):
        ratio = f"{qps / base:8.1f}x" if base else "        "
        print(f"  {task:10s} {engine:22s} {qps:12.1f} QPS {ratio}  exact={exact}", flush=True)
        rows.append((name, task, engine, qps, exact))

    qk = q[:nq_knn]
    q = q[:nq_range]
    ivf = None
    if ivf_nprobe:
        ivf = HammingIndex(bits, engine="faiss-ivf", engine_settings={"nprobe": ivf_nprobe})
        ivf.add(db)
        t = time.perf_counter()
        eng = ivf._engine(None)
        print(f"  (faiss-ivf: nlist={eng.nlist} nprobe={eng.nprobe}, k-means + add {time.perf_counter() - t:.1f}s)")
    for k in ks:
        qf, (D, _) = timed(lambda x: fl.search(x, k), qk)
        row(f"knn k={k}", "faiss IndexBinaryFlat", qf, check_knn(D, ref, k))
        for eng in ("auto", "flat"):
            qo, (D, _) = timed(lambda x: ours.search(x, k, engine=eng), qk)
            row(f"knn k={k}", f"deephash {eng}", qo, check_knn(D, ref, k), qf)
        if ivf is not None:
            qo, (D, _) = timed(lambda x: ivf.search(x, k), qk)
            row(f"knn k={k}", "faiss-ivf (approx.)", qo, f"no, recall {knn_recall(D, ref, k):.3f}", qf)
    for r in radii:
        # FAISS radii are exclusive: r + 1 asks for d <= r; r // nhash flips per table make it exact.
        mh.nflip = r // nhash
        qm, (lims, _, I) = timed(lambda x: mh.range_search(x, r + 1), q)
        row(f"range r<={r}", "faiss MultiHash", qm, check_range(lims, I, ref, r))
        qo, (lims, _, I) = timed(lambda x: ours.range_search(x, r), q)
        row(f"range r<={r}", "deephash auto", qo, check_range(lims, I, ref, r), qm)
        print(f"  {'':10s} {'':22s} (results per query: mean {lims[-1] / (len(lims) - 1):.0f}, max "
              f"{np.diff(lims).max()})", flush=True)
    if restart:
        restart_rows(name, ours, q, rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,10M", help="database sizes for the 64-bit runs, e.g. 1M,10M")
    ap.add_argument("--queries", type=int, default=100, help="queries for k-NN rows")
    ap.add_argument("--range-queries", type=int, default=200_000,
                    help="queries for radius rows on random codes: enough that caches do not hold the probed buckets")
    ap.add_argument("--check", type=int, default=20, help="queries checked against brute force per dataset")
    ap.add_argument("--centres", default="10,100", help="cluster counts for the clustered datasets")
    ap.add_argument("--quick", action="store_true", help="small sizes and fewer datasets (< 1 minute)")
    ap.add_argument("--learned", type=Path, default=None,
                    help="folder with query.npz and database.npz of a trained model (e.g. runs/demo/48bits): "
                         "adds datasets of those codes replicated with noise to each size")
    ap.add_argument("--only", default="random,widths,clustered,learned",
                    help="which dataset groups to run (comma-separated)")
    ap.add_argument("--ivf-nprobe", type=int, default=16,
                    help="add approximate faiss-ivf k-NN rows (recall reported) on 64-bit data; 0: none")
    ap.add_argument("--restart", action=argparse.BooleanOptionalAction, default=True,
                    help="time the first search after saving and loading the random-64 and learned indexes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--milvus", default=None, metavar="SIZES",
                    help="run only the Milvus Lite rows (benchmarks/search_milvus.py) at these sizes, e.g. 100K,1M")
    a = ap.parse_args(argv)
    if a.milvus:
        from search_milvus import run as run_milvus

        rows = []
        run_milvus([parse_size(s) for s in a.milvus.split(",")], a.queries, a.check, a.seed, timed, brute,
                   check_knn, check_range, rows)
        bad = [r for r in rows if r[4] is False]
        print(f"\nexactness: {len(rows) - len(bad)}/{len(rows)} rows exact; load {os.getloadavg()}")
        return 1 if bad else 0
    groups = set(a.only.split(","))
    if a.quick:
        a.sizes, a.queries, a.range_queries, a.centres = "200K", min(a.queries, 50), 500, "100"
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    centres = [int(c) for c in a.centres.split(",")]
    rng = np.random.default_rng(a.seed)
    print(f"deephash search benchmark  cpus={os.cpu_count()} load={os.getloadavg()} faiss={faiss.__version__} "
          f"faiss_threads={faiss.omp_get_max_threads()}", flush=True)
    rows = []
    nq = max(a.queries, a.range_queries)
    for n in sizes if "random" in groups else []:
        run_dataset(f"random-64-{n:,}", random_codes(rng, n, 64), random_codes(rng, nq, 64),
                    (10, 100), (0, 1, 2), a.check, rows, a.queries, ivf_nprobe=a.ivf_nprobe, restart=a.restart)
    n0 = sizes[0]
    for bits in (16, 32, 128) if "widths" in groups else ():
        # FAISS MultiHash is slow on 16/32-bit codes at r = 2: fewer radius queries here.
        run_dataset(f"random-{bits}-{n0:,}", random_codes(rng, n0, bits), random_codes(rng, nq, bits),
                    (10,), (0, 1, 2), a.check, rows, a.queries, min(nq, 20_000))
    for n in sizes if a.learned is not None and "learned" in groups else []:
        db, q, width = learned_codes(rng, a.learned, n)
        run_dataset(f"learned-{width}-{n:,} ({a.learned.name})", db, q[:nq], (10,), (0, 1, 2), a.check, rows, a.queries,
                    a.queries, ivf_nprobe=a.ivf_nprobe, restart=a.restart)
    for n in sizes if "clustered" in groups else []:
        for c in centres:
            db, q = clustered_codes(rng, n, nq, 64, c)
            # FAISS MultiHash is slow on clustered codes: use the k-NN query count for its rows.
            run_dataset(f"clustered-64-{c}c-{n:,}", db, q, (10,), (2,), a.check, rows, a.queries, a.queries,
                        ivf_nprobe=a.ivf_nprobe)
    bad = [r for r in rows if r[4] is False]
    print(f"\nexactness: {len(rows) - len(bad)}/{len(rows)} rows exact or approximate by design (faiss-ivf, "
          f"recall shown); load {os.getloadavg()}")
    for r in bad:
        print("  NOT EXACT:", r)
    return 1 if any(r[2].startswith("deephash") for r in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
