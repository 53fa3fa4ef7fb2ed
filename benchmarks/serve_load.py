"""Load test of ``deephash serve`` on loopback: concurrent clients for a bounded time and request count.

Not a test: run by hand, e.g.
    python benchmarks/serve_load.py                                   # 50 clients, 30 s per phase, 1M codes
    python benchmarks/serve_load.py --clients 16 --seconds 10 --codes 200K --checkpoint runs/cifar/last.ckpt

Phase (a): code queries (JSON, hex) against an index of random codes. Phase (b): image queries (multipart
PNG uploads, micro-batched by the server) with a model (``--checkpoint``; by default a DSH model trained
for one epoch on the embedded digits), compared with that model's own batched encode rate measured in the
same run, before the server starts. The server runs in its own process; its resident memory (peak) is read
from /proc. The clients share the machine with the server, so compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KM" else s) * mult)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``deephash serve`` in a subprocess on a free loopback port."""

    def __init__(self, index_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
        env.pop("DEEPHASH_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "deephash", "serve", str(index_dir), "--port", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("the server exited at start")
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, in MiB."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


async def load(url: str, make_request, clients: int, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies, errors, sent = [], [], 0
    stop_at = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient, n: int):
        nonlocal sent
        rng = np.random.default_rng(n)
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            t = time.perf_counter()
            try:
                r = await c.post(url + "/v1/search", **make_request(rng))
                ok = r.status_code == 200 and "results" in r.json()
            except httpx.HTTPError as e:
                ok, r = False, e
            latencies.append(time.perf_counter() - t)
            if not ok:
                errors.append(str(getattr(r, "status_code", r)))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as c:
        start = time.perf_counter()
        await asyncio.gather(*[client(c, n) for n in range(clients)])
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "rps": len(lat) / elapsed, "p50": np.percentile(lat, 50), "p95": np.percentile(lat, 95),
            "p99": np.percentile(lat, 99), "errors": len(errors), "first_errors": errors[:3]}


def code_index(folder: Path, n: int, bits: int, seed: int = 0) -> Path:
    from deephash.index import HammingIndex

    index = HammingIndex(bits)
    index.add(np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8))
    return index.save(folder)


def image_index(folder: Path, checkpoint: Path | None, work: Path):
    """An index of the model's database split, some of its query images as PNG bytes, and the model."""
    from deephash.retrieval import Encoder, ImageIndex

    if checkpoint is None:
        from typer.testing import CliRunner

        from deephash.cli import app

        r = CliRunner().invoke(app, ["train", "--data", "digits", "--bits", "48", "--epochs", "1", "--out",
                                     str(work / "run"), "-q"])
        if r.exit_code != 0:
            raise SystemExit(r.output)
        checkpoint = work / "run" / "last.ckpt"
    encoder = Encoder(checkpoint)
    index = ImageIndex.build(checkpoint, encoder.dataset(split="database"))
    index.save(folder)
    queries = encoder.dataset(split="query")
    pixels = [queries.image_u8(i) for i in range(min(64, len(queries)))]
    return encoder, pixels


def encode_rate(encoder, pixels, seconds: float = 5.0, batch: int = 32) -> float:
    """The model's own throughput on batches of ``batch`` images, in images per second."""
    images = (pixels * (batch // len(pixels) + 1))[:batch]
    encoder.encode_images(images)  # warm up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        encoder.encode_images(images)
        n += batch
    return n / (time.perf_counter() - start)


def png_bytes(pixels) -> list[bytes]:
    from PIL import Image

    out = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="per phase (at most 120)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="per phase")
    ap.add_argument("--codes", default="1M", help="size of the random-code index of phase (a)")
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--checkpoint", type=Path, help="model of phase (b) (default: 1 epoch of DSH on digits)")
    ap.add_argument("--skip", choices=["codes", "images"], help="run one phase only")
    args = ap.parse_args()
    seconds = min(args.seconds, 120.0)
    print(f"# {args.clients} clients, {seconds:g} s per phase, at most {args.max_requests} requests; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.skip != "codes":
            n = parse_size(args.codes)
            code_index(tmp / "codes", n, args.bits)
            server = Server(tmp / "codes")
            nbytes = args.bits // 8
            res = asyncio.run(load(server.url, lambda rng: {"json": {"code": rng.bytes(nbytes).hex(), "k": 10}},
                                   args.clients, seconds, args.max_requests))
            rows.append((f"(a) code queries, {n:,} x {args.bits}-bit codes, k=10", res, server.rss_mb()))
            server.stop()
        if args.skip != "images":
            encoder, pixels = image_index(tmp / "images", args.checkpoint, tmp)
            rate = encode_rate(encoder, pixels)
            files = png_bytes(pixels)
            server = Server(tmp / "images")
            res = asyncio.run(load(server.url, lambda rng: {"files": {"image": ("q.png", files[rng.integers(len(files))])},
                                                            "data": {"k": "10"}}, args.clients, seconds,
                                   args.max_requests))
            res["encode_rate"] = rate
            rows.append((f"(b) image queries, {encoder.config.model} {encoder.bits}-bit model, k=10", res, server.rss_mb()))
            server.stop()
    print("| workload | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server RSS MiB (peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, (rss, peak) in rows:
        print(f"| {name} | {r['requests']:,} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
              f"{r['errors']} | {rss:,.0f} ({peak:,.0f}) |")
    for name, r, _ in rows:
        if r["errors"]:
            print(f"errors in {name}: {r['first_errors']}")
        if "encode_rate" in r:
            print(f"model's batched encode rate (32 images per batch, same run): {r['encode_rate']:,.0f} images/s; "
                  f"served image queries reach {r['rps'] / r['encode_rate']:.0%} of it")


if __name__ == "__main__":
    main()
