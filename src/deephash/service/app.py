"""The HTTP API and web page over one ``ImageIndex`` (FastAPI). ``create_app(settings)`` assembles the app;
``deephash serve`` runs it with uvicorn.

What goes where: the endpoints are ``routes/<concern>.py`` (search, items, status and metrics, the page), each
an ``APIRouter`` found by ``routes.routers()``; ``errors.py`` answers every error as ``{"error", "detail"}``;
``batcher.py`` batches queries; ``bodies.py`` reads request bodies within their limits; ``metrics.py`` counts;
``state.py`` holds the index and serialises writes. This module wires them together and runs the server.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import DeephashError
from .batcher import SearchBatchers
from .bodies import BodyLimit
from .errors import install_error_handlers
from .metrics import Measure, Metrics
from .routes import routers
from .routes.page import STATIC
from .state import ServiceState, Settings

log = logging.getLogger("deephash.service")
SETTINGS_ENV = "DEEPHASH_SERVE_SETTINGS"  # --workers > 1: each worker process builds its app from this


def create_app(settings: Settings, index=None) -> FastAPI:
    """The service for ``settings.index_dir`` (or an already open ``index``)."""
    state = ServiceState(settings, index)
    metrics = Metrics(lambda: len(state.index))
    batchers = SearchBatchers(state, settings.max_batch, settings.batch_wait_ms, metrics.batch_size)

    async def keep_fresh():
        while True:
            await asyncio.sleep(settings.refresh_s)
            try:
                await asyncio.to_thread(state.refresh)
            except Exception:  # noqa: BLE001 - a half-written or damaged folder: keep serving what is loaded
                log.exception("could not reload the index after another writer changed it")

    @asynccontextmanager
    async def lifespan(app):
        if settings.warm_up:
            await asyncio.to_thread(warm_up, state.index)
        gc.collect()
        gc.freeze()  # the index, the model and the app live as long as the server: no collection walks them again
        refresher = asyncio.get_running_loop().create_task(keep_fresh()) if settings.refresh_s > 0 else None
        yield
        if refresher is not None:
            refresher.cancel()
        gc.unfreeze()  # an app built and stopped in a longer-lived process (tests) leaves nothing pinned
        await batchers.close()

    app = FastAPI(title="deephash", version=__version__, lifespan=lifespan,
                  description="Search an image index by image, code or id; add and remove images (with a token).")
    app.state.service = state
    app.state.metrics = metrics
    app.state.batchers = batchers
    app.state.batcher = batchers.images  # the names tests and benchmarks read the batch counts by
    app.state.code_batcher = batchers.codes
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(Measure, metrics=metrics)
    install_error_handlers(app)
    for router in routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def warm_up(index) -> None:
    """Load the model and run one search before the first request, so no client waits for a model load or a
    kernel compilation. An index whose model cannot be loaded still serves searches by code and id."""
    if len(index):
        index.search(ids=index.ids[:1], k=1)
    if index.checkpoint:
        try:
            index.encoder
        except DeephashError as e:
            log.warning("searches by image will fail: %s", e)


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``--workers > 1``): settings come from the environment."""
    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info", access_log: bool = True) -> None:
    """Run the service with uvicorn until interrupted (one log line per request unless ``access_log`` is
    off, which a server answering thousands of requests a second may want)."""
    import uvicorn

    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=access_log)
    else:
        os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
        uvicorn.run("deephash.service.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=access_log)
