"""Python threads over query blocks: the kernels release the GIL, and this was steadier
on the shared VM than FAISS's OpenMP pool."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()  # searches in several threads may ask for the pool first at once


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=default_threads(), thread_name_prefix="deephash-index")
    return _POOL


def run_parallel(job, n: int, threads: int, block: int | None = None) -> None:
    """Call job(start, end) on contiguous blocks covering range(n), at most `threads` at a time."""
    if n == 0:
        return
    if block is None:
        block = max(1, -(-n // threads))
    spans = [(s, min(s + block, n)) for s in range(0, n, block)]
    if threads <= 1 or len(spans) == 1:
        for s, e in spans:
            job(s, e)
        return
    for f in [_pool().submit(job, s, e) for s, e in spans]:
        f.result()
