"""``/metrics``' numbers (Prometheus): requests by method, route and status, their latency, the index size
and the micro-batch sizes. One registry per app, so apps built side by side (tests) do not share counts."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Measure", "Metrics"]


class Metrics:
    def __init__(self, count):
        """``count()``: the images in the index, read when scraped."""
        self.registry = CollectorRegistry()
        self.requests = Counter("deephash_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("deephash_http_request_seconds", "Time to answer a request", ["route"],
                                 registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        size = Gauge("deephash_index_items", "Images in the index", registry=self.registry)
        size.set_function(count)
        self.batch_size = Histogram("deephash_encode_batch_size", "Image queries encoded together",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Measure:
    """ASGI middleware: counts answered requests by method, route template and status, and times them."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.requests, self.latency = app, metrics.requests, metrics.latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status[0])).inc()
            self.latency.labels(route).observe(time.perf_counter() - start)
