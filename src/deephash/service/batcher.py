"""Micro-batching: image queries that arrive within a few milliseconds of each other are encoded together.

A model encodes a batch of 32 images far faster than 32 single images, so under load the service gathers the
waiting queries (up to ``max_batch``, or until ``max_wait_ms`` after the first) and hands them to one call of
``fn`` on a worker thread, as model servers do. Queries that differ in their search settings go in separate
calls of the same batch. Code queries are batched the same way: one scan of the index answers them all.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Hashable

import numpy as np


class MicroBatcher:
    """``await submit(key, item)`` returns ``fn(key, items)[i]`` for its own item; ``fn`` takes every waiting
    item with the same ``key`` at once and returns one result per item (or raises, failing them all)."""

    def __init__(self, fn: Callable[[Hashable, list], list], max_batch: int = 32, max_wait_ms: float = 5.0):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.batches = 0  # batches run, and items in them (for /metrics and tests)
        self.items = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, key: Hashable, item: Any):
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((key, item, fut))
        return await fut

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict = {}
            for key, item, fut in batch:
                groups.setdefault(key, []).append((item, fut))
            for key, members in groups.items():
                live = [(item, fut) for item, fut in members if not fut.done()]  # skip cancelled requests
                if not live:
                    continue
                self.batches += 1
                self.items += len(live)
                try:
                    results = await asyncio.to_thread(self.fn, key, [item for item, _ in live])
                except Exception as e:  # noqa: BLE001 - handed to every waiting request
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), res in zip(live, results):
                    if not fut.done():
                        fut.set_result(res)


class SearchBatchers:
    """The service's two batchers over ``state.index``: image queries (``images``, keyed by their search
    settings, one model call per batch, sizes observed in ``batch_size``) and code queries (``codes``, one
    scan of the index per batch: ~7x less work each)."""

    def __init__(self, state, max_batch: int, max_wait_ms: float, batch_size=None):
        def run_images(key, images):
            mode, k, radius, threshold, rerank = key
            if batch_size is not None:
                batch_size.observe(len(images))
            return state.index.search(images=images, k=k, radius=radius, mode=mode, threshold=threshold,
                                      rerank=rerank)

        def run_codes(key, codes):
            k, radius = key
            return state.index.search(codes=np.concatenate(codes), k=k, radius=radius)

        self.images = MicroBatcher(run_images, max_batch, max_wait_ms)
        self.codes = MicroBatcher(run_codes, max_batch, max_wait_ms)

    async def close(self) -> None:
        await self.images.close()
        await self.codes.close()
