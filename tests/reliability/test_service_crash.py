"""SIGKILL of `deephash serve` while clients add images: every write the server acknowledged survives, and
the index then loads, passes its checksums and holds nothing half-written."""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.retrieval import open_index

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "crash-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _add(url: str, data: bytes) -> list[int]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/v1/items", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        import json

        return json.loads(r.read())["ids"]


# a few kills in the default suite; the full loop with the slow tests (.ci/run runs both)
@pytest.mark.parametrize("kills", [2, pytest.param(20, marks=pytest.mark.slow)])
def test_sigkill_during_writes_keeps_every_acknowledged_write(served_indexes, tmp_path, kills):
    index_dir = tmp_path / "idx"
    shutil.copytree(served_indexes["dsh"], index_dir)
    rng = np.random.default_rng(0)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("DEEPHASH_TOKEN", None)
    acknowledged: list[int] = []
    killed = 0
    for round_ in range(kills):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "deephash", "serve", str(index_dir), "--port", str(port),
                                 "--token", TOKEN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(url + "/health", timeout=1)
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                    time.sleep(0.05)
            stop = threading.Event()
            images = [_png(rng) for _ in range(40)]

            def client(n):
                for data in images[n::2]:
                    if stop.is_set():
                        return
                    try:
                        acknowledged.extend(_add(url, data))
                    except (urllib.error.URLError, ConnectionError, OSError):
                        return  # the server was killed: this write was never acknowledged

            threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            time.sleep(float(rng.uniform(0.05, 1.0)))  # a random point among the writes
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait(10)
            stop.set()
            for t in threads:
                t.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stderr.close()
        index = open_index(index_dir)  # loads and verifies every checksum
        missing = set(acknowledged) - set(index.ids.tolist())
        assert not missing, f"round {round_}: acknowledged writes lost: {sorted(missing)[:5]}"
        assert all(md and md.get("path") for md in index.get_metadata(acknowledged)), round_
    assert killed == kills and len(acknowledged) > kills  # writes were acknowledged throughout
