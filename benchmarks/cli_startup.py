"""Start-up time of the command line: each command against `python -c "import torch"`, in one run.

Times the median of --repeat runs of each command as a fresh process (what a user or a script pays per
call), on a 100k-code index built once in a temp folder, and prints the ratio to the torch import.
Targets (issue 18): --help and version under 25% of the torch import; a codes-file search under 60%.
Issue 24: a one-photo search by image on a 1,000-photo index (`deephash up` on 1,000 CIFAR-10 test JPEGs from
--data, or as many generated photos when it is absent; built once, in the temp folder, with its own cache)
under 3 s of wall time.

Run: python benchmarks/cli_startup.py [--repeat 5] [--photos 1000 | --photos 0 to skip that row]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"


def cpu_name() -> str:
    """The CPU as `lscpu` names it, with its core count (timings are only comparable on the same one)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = re.search(r"^Model name:\s*(.+)$", out, re.M).group(1).strip()
        return f"{name}, {os.cpu_count()} cores"
    except (OSError, subprocess.CalledProcessError, AttributeError):
        return f"unknown CPU, {os.cpu_count()} cores"


def photo_folder(folder: Path, n: int, archive: Path) -> str:
    """``n`` photos in ``folder``: test-split JPEGs of the CIFAR-10 archive (the first n/10 of each class), or
    generated ones."""
    folder.mkdir(parents=True)
    per_class = -(-n // 10)
    if archive.is_file():
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = member.name.split("/")
                if (member.isfile() and member.name.endswith(".jpg") and "test" in parts
                        and int(Path(parts[-1]).stem) < per_class):
                    (folder / f"{parts[-2]}_{parts[-1]}").write_bytes(tar.extractfile(member).read())
                    n -= 1
                    if n == 0:
                        return f"CIFAR-10 test JPEGs from {archive.name}"
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):  # smooth random colour fields, upscaled: photo-like JPEGs, not noise
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(folder / f"gen_{i:04d}.jpg", quality=90)
    return "generated JPEGs"


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
    ap.add_argument("--photos", type=int, default=1000, help="photos indexed for the one-photo search (0: skip it)")
    ap.add_argument("--data", type=Path, default=CIFAR, help="CIFAR-10 JPEG archive the photos come from")
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
                ("deephash index info", dh + ["index", "info", f"{tmp}/idx"]),
                (f"deephash search ({args.codes:,} codes, codes-file query)",
                 dh + ["search", f"{tmp}/idx", "--query", f"{tmp}/q.npz", "-k", "10"])]
        if args.photos:
            source = photo_folder(Path(tmp) / "photos", args.photos, args.data)
            photo_env = dict(env, DEEPHASH_CACHE=f"{tmp}/cache")  # its own model export and records
            t = time.perf_counter()
            subprocess.run(dh + ["up", f"{tmp}/photos", "--no-serve", "-q"], check=True, capture_output=True,
                           env=photo_env)
            print(f"indexed {args.photos:,} {source} with deephash up in {time.perf_counter() - t:.0f} s")
            query = sorted((Path(tmp) / "photos").glob("*.jpg"))[0]
            search = dh + ["search", f"{tmp}/photos/.deephash", "--image", str(query), "-k", "3"]
            times_photo = [(f"deephash search ({args.photos:,}-photo index, one photo)",
                            timed(search, args.repeat, photo_env))]
        else:
            times_photo = []
        times = [(name, timed(cmd, args.repeat, env)) for name, cmd in rows] + times_photo
    base = times[0][1]
    load = os.getloadavg()[0]
    print(f"CLI start-up, median of {args.repeat} fresh processes each (load {load:.2f}; {cpu_name()})")
    print(f"{'command':<56} {'seconds':>8} {'x torch import':>15}")
    for name, t in times:
        print(f"{name:<56} {t:>8.2f} {t / base:>14.0%}")


if __name__ == "__main__":
    main()
