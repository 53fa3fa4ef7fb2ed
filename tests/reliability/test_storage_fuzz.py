"""Byte-level fuzzing of the index loader: 1,000 seeded corruptions (flip, insert, truncate) of the manifest,
codes, ids and metadata files of a small index.

Each corruption must be refused with a DeephashError or load the index with exactly its original codes, ids
and metadata. The data files are checksummed, so every change to them must be refused. The manifest is not:
a change it survives (a digit of ``next_id``, a letter of a class name or of the checkpoint path, the
``version``) loads and is counted as undetectable, by field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from deephash.errors import DeephashError
from deephash.index import HammingIndex

CASES = 1000


def build(path: Path) -> HammingIndex:
    rng = np.random.default_rng(7)
    index = HammingIndex(32, engine_settings={"m": 2})
    meta = [{"path": f"img/{i}.png", "labels": ["cat"] if i % 2 else ["dog"], "score": i} if i % 4 else None
            for i in range(40)]
    index.add(rng.integers(0, 256, (40, 4), dtype=np.uint8), ids=np.arange(100, 140), metadata=meta)
    index.class_names, index.checkpoint = ["cat", "dog"], "models/dsh.ckpt"
    index.save(path)
    return HammingIndex.load(path, mmap=False)


def corrupt(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    op = rng.choice(["flip", "flip", "insert", "truncate"])
    pos = int(rng.integers(0, len(data)))
    if op == "flip":
        return op, data[:pos] + bytes([data[pos] ^ int(rng.integers(1, 256))]) + data[pos + 1:]
    if op == "insert":
        return op, data[:pos] + bytes([int(rng.integers(0, 256))]) + data[pos:]
    return op, data[:pos]


def header(index: HammingIndex) -> dict:
    info = index.info()
    return {k: info[k] for k in ("bits", "code_bits", "engine", "engine_settings", "next_id", "checkpoint",
                                 "class_names", "version")}


def test_loader_refuses_or_survives_every_corruption(tmp_path):
    path = tmp_path / "idx"
    original = build(path)
    want_md = original.get_metadata(original.ids)
    names = json.loads((path / "manifest.json").read_text())["files"]
    targets = {"manifest": path / "manifest.json", **{k: path / v["name"] for k, v in names.items()}}
    pristine = {k: p.read_bytes() for k, p in targets.items()}
    rng = np.random.default_rng(16)
    refused, undetectable, failures = Counter(), Counter(), []
    for case in range(CASES):
        target = ["manifest", "codes", "ids", "metadata"][case % 4]
        op, data = corrupt(pristine[target], rng)
        if data == pristine[target]:
            data += b"\0"  # a flip is never a no-op, but an insert can be; keep every case a real change
        targets[target].write_bytes(data)
        try:
            loaded = HammingIndex.load(path)
            D, I = loaded.search(original.codes, 3)
            md = loaded.get_metadata(loaded.ids)
        except DeephashError:
            refused[target] += 1
        except Exception as e:  # noqa: BLE001 - any other kind is a traceback for a user
            failures.append(f"case {case} {target} {op}: {type(e).__name__}: {e}")
        else:
            if target != "manifest":
                failures.append(f"case {case} {target} {op}: silently accepted a change to a checksummed file")
            elif not (np.array_equal(loaded.ids, original.ids) and np.array_equal(loaded.codes, original.codes)
                      and md == want_md and np.array_equal(I, original.search(original.codes, 3)[1])):
                failures.append(f"case {case} manifest {op}: loaded different contents")
            else:
                changed = [k for k, v in header(original).items() if header(loaded)[k] != v]
                undetectable[",".join(changed) or "formatting only"] += 1
        finally:
            targets[target].write_bytes(pristine[target])
    print(f"\n{CASES} corruptions: refused {dict(refused)} ({sum(refused.values())}); "
          f"undetectable manifest edits {dict(undetectable)} ({sum(undetectable.values())}); "
          f"failures {len(failures)}")
    assert not failures, "\n".join(failures[:20])
    assert sum(refused.values()) + sum(undetectable.values()) == CASES
    assert all(refused[k] == CASES // 4 for k in ("codes", "ids", "metadata"))
