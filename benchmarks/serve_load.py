"""Load test of ``deephash serve`` on loopback: concurrent clients for a bounded time and request count.

Not a test: run by hand, e.g.
    python benchmarks/serve_load.py                                   # 50 clients, 30 s per phase, 1M codes
    python benchmarks/serve_load.py --workers 2 --rate 1000           # code queries on 2 server processes
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
import json
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
    """``deephash serve`` (access log off) in a subprocess on a free loopback port."""

    def __init__(self, index_dir: Path, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
        env.pop("DEEPHASH_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "deephash", "serve", str(index_dir), "--port", str(self.port),
                                      "--workers", str(workers), "--no-access-log"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                time.sleep(2.0 if workers > 1 else 0.0)  # the other workers finish loading the index
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("the server exited at start")
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def _tree(self) -> list[int]:
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
        return pids

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server's processes together, in MiB."""
        now = peak = 0
        for pid in self._tree():
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            now += int(fields["VmRSS"].split()[0])
            peak += int(fields["VmHWM"].split()[0])
        return now / 1024, peak / 1024

    def cpu_seconds(self) -> float:
        """CPU time the server's processes have used so far (user + system): per request, a measure of the
        server's own cost that other load on the machine hardly changes."""
        total = 0
        for pid in self._tree():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Request:
    """One HTTP/1.1 request, its bytes prepared before the clock starts: a JSON body or a multipart upload."""

    @staticmethod
    def json(host: str, body: dict) -> bytes:
        data = json.dumps(body).encode()
        return _head(host, "application/json", len(data)) + data

    @staticmethod
    def upload(host: str, name: str, content: bytes, fields: dict) -> bytes:
        boundary = "deephashload7f3a"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return _head(host, f"multipart/form-data; boundary={boundary}", len(data)) + data


def _head(host: str, ctype: str, length: int) -> bytes:
    return (f"POST /v1/search HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def load(port: int, requests: list[bytes], clients: int, seconds: float, max_requests: int,
               rate: float | None = None) -> dict:
    """``clients`` keep-alive connections sending ``requests`` (cycled) for ``seconds``.

    Closed loop (``rate`` None): each client sends its next request as soon as the last one is answered, so
    requests/s is the server's capacity at that concurrency. Open loop (``rate``: requests/s over all clients):
    each client sends on a fixed schedule and latency counts from the scheduled time, so a slow answer also
    delays (and is charged to) the requests queued behind it, as wrk2 measures. The client is a few lines of
    asyncio on raw sockets: a full HTTP client library costs more CPU per request than the server under test.
    """
    latencies, errors, sent = [], [], 0
    start = time.perf_counter()
    stop_at = start + seconds

    async def client(n: int):
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = clients / rate if rate else 0.0
        due = start + n * interval / clients
        i = n
        try:
            while sent < max_requests:
                if rate:
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                if time.perf_counter() >= stop_at:
                    break
                sent += 1
                t = due if rate else time.perf_counter()
                writer.write(requests[i % len(requests)])
                i += clients
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    body = await reader.readexactly(length)
                    ok = status == 200 and body.startswith(b"{") and b'"results"' in body
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    latencies.append(time.perf_counter() - t)
                    errors.append(repr(e))
                    return
                latencies.append(time.perf_counter() - t)
                if not ok:
                    errors.append(f"{status}: {body[:80]!r}")
                due += interval
        finally:
            writer.close()

    await asyncio.gather(*[client(n) for n in range(clients)])
    elapsed = time.perf_counter() - start
    lat = np.array(latencies or [0.0]) * 1000
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": np.percentile(lat, 50),
            "p95": np.percentile(lat, 95), "p99": np.percentile(lat, 99), "errors": len(errors),
            "first_errors": errors[:3]}


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


def measure(server: Server, requests: list[bytes], args, rate: float | None = None) -> dict:
    """One load phase against ``server``, with the server's CPU time per request."""
    cpu = server.cpu_seconds()
    res = asyncio.run(load(server.port, requests, args.clients, min(args.seconds, 120.0), args.max_requests, rate))
    res["cpu_ms"] = (server.cpu_seconds() - cpu) * 1000 / max(res["requests"], 1)
    res["rss"] = server.rss_mb()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="per phase (at most 120)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="per phase")
    ap.add_argument("--codes", default="1M", help="size of the random-code index of phase (a)")
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--workers", type=int, default=1, help="server processes for code queries (read-only)")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="requests/s of the open-loop code-query phase (0: skip it)")
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
            server = Server(tmp / "codes", args.workers)
            rng = np.random.default_rng(1)
            host = f"127.0.0.1:{server.port}"
            reqs = [Request.json(host, {"code": rng.bytes(args.bits // 8).hex(), "k": 10}) for _ in range(4096)]
            name = f"(a) code queries, {n:,} x {args.bits}-bit codes, k=10, {args.workers} worker(s)"
            rows.append((name + ", closed loop", measure(server, reqs, args)))
            if args.rate:
                rows.append((name + f", open loop at {args.rate:,.0f}/s", measure(server, reqs, args, args.rate)))
            server.stop()
        if args.skip != "images":
            encoder, pixels = image_index(tmp / "images", args.checkpoint, tmp)
            rate = encode_rate(encoder, pixels)
            server = Server(tmp / "images")
            host = f"127.0.0.1:{server.port}"
            reqs = [Request.upload(host, "q.png", f, {"k": 10}) for f in png_bytes(pixels)]
            res = measure(server, reqs, args)
            res["encode_rate"] = rate
            rows.append((f"(b) image queries, {encoder.config.model} {encoder.bits}-bit model, k=10, closed loop", res))
            server.stop()
    print("| workload | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/request | "
          "server RSS MiB (peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        rss, peak = r["rss"]
        print(f"| {name} | {r['requests']:,} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
              f"{r['errors']} | {r['cpu_ms']:.2f} | {rss:,.0f} ({peak:,.0f}) |")
    for name, r in rows:
        if r["errors"]:
            print(f"errors in {name}: {r['first_errors']}")
        if "encode_rate" in r:
            print(f"model's batched encode rate (32 images per batch, same run): {r['encode_rate']:,.0f} images/s; "
                  f"served image queries reach {r['rps'] / r['encode_rate']:.0%} of it")
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
