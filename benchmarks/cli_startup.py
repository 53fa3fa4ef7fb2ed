"""Start-up time of the command line: each command against `python -c "import torch"`, in one run.

Times the median of --repeat runs of each command as a fresh process (what a user or a script pays per
call), on a 100k-code index built once in a temp folder, and prints the ratio to the torch import.
Targets (issue 18): --help and version under 25% of the torch import; a codes-file search under 60%.

Run: python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeat: int, env: dict) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--codes", type=int, default=100_000)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(ROOT / "src"))
        from deephash.codes import CodesFile

        rng = np.random.default_rng(0)
        CodesFile(rng.integers(0, 256, (args.codes, 8), dtype=np.uint8), 64).save(f"{tmp}/db.npz")
        CodesFile(rng.integers(0, 256, (10, 8), dtype=np.uint8), 64).save(f"{tmp}/q.npz")
        dh = [py, "-m", "deephash"]
        subprocess.run(dh + ["index", "build", "--codes", f"{tmp}/db.npz", "--out", f"{tmp}/idx"], check=True,
                       capture_output=True, env=env)
        subprocess.run(dh + ["version"], check=True, capture_output=True, env=env)  # warm caches (numba, pyc)
        rows = [("python -c 'import torch'", [py, "-c", "import torch"]),
                ("deephash --help", dh + ["--help"]),
                ("deephash version", dh + ["version"]),
                ("deephash index info", dh + ["index", "info", "--index", f"{tmp}/idx"]),
                (f"deephash search ({args.codes:,} codes, codes-file query)",
                 dh + ["search", "--index", f"{tmp}/idx", "--query", f"{tmp}/q.npz", "-k", "10"])]
        times = [(name, timed(cmd, args.repeat, env)) for name, cmd in rows]
    base = times[0][1]
    load = os.getloadavg()[0]
    print(f"CLI start-up, median of {args.repeat} fresh processes each (load {load:.2f})")
    print(f"{'command':<52} {'seconds':>8} {'x torch import':>15}")
    for name, t in times:
        print(f"{name:<52} {t:>8.2f} {t / base:>14.0%}")


if __name__ == "__main__":
    main()
