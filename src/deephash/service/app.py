"""The HTTP API and web page over one ``ImageIndex`` (FastAPI). ``create_app(settings)`` builds the app;
``deephash serve`` runs it with uvicorn.

Every error is answered as ``{"error": <HTTP reason>, "detail": <message>}``: ``DeephashError`` kinds carry
their status, anything unexpected is a 500 whose traceback goes to the server log only.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from http import HTTPStatus
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import CorruptFileError, DeephashError, InvalidInputError
from .batcher import MicroBatcher
from .errors import PayloadTooLargeError, UnsupportedMediaError
from .state import ServiceState, Settings

log = logging.getLogger("deephash.service")
STATIC = Path(__file__).parent / "static"
SETTINGS_ENV = "DEEPHASH_SERVE_SETTINGS"  # --workers > 1: each worker process builds its app from this
MAX_FILES = 64  # uploads per request


class SearchBody(BaseModel):
    """A JSON search: exactly one of ``code`` (the packed code in hex) or ``id`` (an indexed image)."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = None
    id: int | None = None
    k: int = 10
    radius: int | None = None
    mode: str = "semantic"
    threshold: float = 0.5
    rerank: int | None = None


class AddBody(BaseModel):
    """Server-side image files to add, relative to (or under) the server's ``--allow-root``."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str]


def create_app(settings: Settings, index=None) -> FastAPI:
    """The service for ``settings.index_dir`` (or an already open ``index``)."""
    state = ServiceState(settings, index)
    registry = CollectorRegistry()
    requests = Counter("deephash_http_requests", "HTTP requests answered", ["method", "route", "status"],
                       registry=registry)
    latency = Histogram("deephash_http_request_seconds", "Time to answer a request", ["route"], registry=registry,
                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    size = Gauge("deephash_index_items", "Images in the index", registry=registry)
    size.set_function(lambda: len(state.index))
    batch_size = Histogram("deephash_encode_batch_size", "Image queries encoded together", registry=registry,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128))

    def run_batch(key, images):
        mode, k, radius, threshold, rerank = key
        batch_size.observe(len(images))
        return state.index.search(images=images, k=k, radius=radius, mode=mode, threshold=threshold, rerank=rerank)

    def run_code_batch(key, codes):  # one scan of the index answers every waiting query (~7x less work each)
        k, radius = key
        return state.index.search(codes=np.concatenate(codes), k=k, radius=radius)

    batcher = MicroBatcher(run_batch, settings.max_batch, settings.batch_wait_ms)
    code_batcher = MicroBatcher(run_code_batch, settings.max_batch, settings.batch_wait_ms)

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
        await batcher.close()
        await code_batcher.close()

    app = FastAPI(title="deephash", version=__version__, lifespan=lifespan,
                  description="Search an image index by image, code or id; add and remove images (with a token).")
    app.state.service = state
    app.state.batcher = batcher
    app.state.code_batcher = code_batcher
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    app.add_middleware(Measure, requests=requests, latency=latency)

    # ---- errors: one JSON shape ------------------------------------------------------------------------

    @app.exception_handler(DeephashError)
    async def deephash_error(request: Request, e: DeephashError):
        return error_response(e.status, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        return error_response(422, _validation_message(e.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (details are in the server log)")

    # ---- read ---------------------------------------------------------------------------------------------

    @app.get("/health", tags=["status"])
    def health():
        return {"status": "ok", "count": len(state.index)}

    @app.get("/v1/info", tags=["status"])
    def info():
        """The index: code length, size, engine, model and class names, and what this server accepts."""
        idx = state.index
        raw = idx.info()
        encoder = getattr(idx, "_encoder", None)
        return {
            "bits": idx.bits, "count": len(idx), "engine": raw.get("engine"), "method": idx.method,
            "model": encoder.config.model if encoder is not None else None,
            "checkpoint": Path(idx.checkpoint).name if idx.checkpoint else None,
            "class_names": idx.class_names, "index_format": raw.get("format"), "index_version": raw.get("version"),
            "category_codes": raw.get("category_codes"), "modes": ["semantic", "category"] if idx.category else
            ["semantic"], "writable": bool(settings.token), "server_paths": bool(settings.allow_root),
            "max_upload_mb": settings.max_upload_mb, "version": __version__,
        }

    @app.post("/v1/search", tags=["search"], openapi_extra=_SEARCH_BODY)
    async def search(request: Request):
        """Rank the index for one query: an uploaded image (multipart field ``image``, form fields ``k``,
        ``radius``, ``mode``, ``threshold``, ``rerank``) or a JSON body with ``code`` (hex) or ``id``.
        ``rerank`` F: take the k*F nearest by Hamming distance, return the k most similar by feature cosine."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=10)
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise InvalidInputError("a multipart search needs the query image in the file field 'image'")
            k, radius = _form_field(form, "k", 10), _form_field(form, "radius", None)
            mode, threshold = str(form.get("mode") or "semantic"), _form_field(form, "threshold", 0.5, float)
            rerank = _form_field(form, "rerank", None)
            _check_search(k, radius, mode, settings.max_k)
            _check_rerank(rerank, state)
            name = upload.filename or "upload"
            pixels = await asyncio.to_thread(decode_upload, await upload.read(), name, settings.max_pixels)
            result = await batcher.submit((mode, k, radius, threshold, rerank), pixels)
            result.query = name
        elif ctype.startswith("application/json"):
            body = _parse(SearchBody, await _json(request))
            _check_search(body.k, body.radius, body.mode, settings.max_k)
            _check_rerank(body.rerank, state)
            if (body.code is None) == (body.id is None):
                raise InvalidInputError("give exactly one of 'code' (hex) or 'id' in the JSON body")
            if body.id is not None:
                result = (await asyncio.to_thread(state.index.search, ids=[body.id], k=body.k, radius=body.radius,
                                                  mode=body.mode, threshold=body.threshold, rerank=body.rerank))[0]
            elif body.mode != "semantic":
                raise InvalidInputError("category mode takes a query image or the id of an indexed image, not a code")
            elif body.rerank is not None:
                raise InvalidInputError("rerank needs a query image or the id of an indexed image: a code has no "
                                        "features")
            else:
                result = await code_batcher.submit((body.k, body.radius), _hex_code(body.code, state))
            result.query = f"id {body.id}" if body.id is not None else body.code
        else:
            raise UnsupportedMediaError("search takes multipart/form-data (an image) or application/json "
                                        f"(a code or id), not {ctype or 'an untyped body'!r}")
        return JSONResponse(result.to_dict())  # already plain JSON types: skips FastAPI's re-encoding

    @app.get("/v1/items/{item_id}", tags=["items"])
    def item(item_id: int):
        """An indexed image's metadata (path, labels, anything stored with it) and its code in hex."""
        code = state.index.semantic.get_codes([item_id])[0]
        md = state.index.semantic.get_metadata([item_id])[0] or {}
        return {"id": item_id, "code": code.tobytes().hex(), **md}

    @app.get("/v1/items/{item_id}/image", tags=["items"], response_class=FileResponse)
    def item_image(item_id: int):
        return FileResponse(state.item_path(item_id), headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/v1/items/{item_id}/thumbnail", tags=["items"], response_class=Response)
    def item_thumbnail(item_id: int, size: int = 160):
        """A JPEG at most ``size`` pixels on its longer side (cached)."""
        return Response(state.thumbnail(item_id, size), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    # ---- write --------------------------------------------------------------------------------------------

    @app.post("/v1/items", tags=["items"], status_code=201, openapi_extra=_ADD_BODY)
    async def add_items(request: Request):
        """Add uploaded images (multipart field ``image``, repeated) or server-side files (JSON ``paths`` under
        ``--allow-root``); saved before the answer. Needs the token."""
        state.check_token(request.headers.get("authorization"))
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
            uploads = [u for u in form.getlist("image") if isinstance(u, UploadFile)]
            if not uploads:
                raise InvalidInputError("give the images to add in the multipart file field 'image'")
            images, metadata = [], []
            for n, u in enumerate(uploads):
                data, name = await u.read(), u.filename or f"upload {n}"
                images.append(await asyncio.to_thread(decode_upload, data, name, settings.max_pixels))
                metadata.append({"path": str(_keep_upload(state, data, name)), "name": name})
        elif ctype.startswith("application/json"):
            body = _parse(AddBody, await _json(request))
            if not body.paths:
                raise InvalidInputError("'paths' is empty")
            images = [state.allowed_path(p) for p in body.paths]
            metadata = None
        else:
            raise UnsupportedMediaError(f"adding takes multipart/form-data or application/json, not {ctype!r}")
        res = await asyncio.to_thread(state.write, lambda idx: idx.add(images, metadata))
        return {"ids": [int(i) for i in res.ids], "failures": [{"input": str(i), "reason": r} for i, r in res.failures],
                "count": len(state.index)}

    @app.delete("/v1/items/{item_id}", tags=["items"])
    async def remove_item(item_id: int, request: Request):
        """Remove an image from every part of the index; saved before the answer. Needs the token."""
        state.check_token(request.headers.get("authorization"))
        await asyncio.to_thread(state.write, lambda idx: idx.remove([item_id]))
        return {"removed": item_id, "count": len(state.index)}

    # ---- metrics and page -----------------------------------------------------------------------------

    @app.get("/metrics", tags=["status"], response_class=Response)
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def warm_up(index) -> None:
    """Load the model and run one search before the first request, so no client waits for a model load or a
    kernel compilation. An index whose model cannot be loaded still serves searches by code and id."""
    if len(index):
        index.search(ids=index.semantic.ids[:1], k=1)
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


# ---- helpers --------------------------------------------------------------------------------------------


def error_response(status: int, detail: str, headers=None) -> JSONResponse:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


def decode_upload(data: bytes, name: str, max_pixels: int):
    """Decode uploaded bytes (whatever the file name claims) to uint8 RGB, refusing images over ``max_pixels``
    before their pixels are decoded."""
    from PIL import Image

    from ..data.images import decode_image

    if not data:
        raise CorruptFileError(f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError as e:
        raise PayloadTooLargeError(f"{name}: {e}") from None
    except Exception:  # noqa: BLE001 - any failure to read the header means it is not an image we read
        raise CorruptFileError(f"{name} is not an image this server can decode") from None
    if w * h > max_pixels:
        raise PayloadTooLargeError(f"{name} has {w}x{h} pixels, over this server's limit of {max_pixels:,}")
    return decode_image(data, None, name)


def _keep_upload(state: ServiceState, data: bytes, name: str) -> Path:
    """Uploaded images are kept in the index folder's ``uploads/`` (named by content) so they can be shown."""
    folder = Path(state.settings.index_dir) / "uploads"
    folder.mkdir(exist_ok=True)
    suffix = Path(name).suffix.lower()
    path = folder / (hashlib.sha256(data).hexdigest()[:24] + (suffix if suffix.isascii() and len(suffix) <= 6 else ""))
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


async def _json(request: Request):
    try:
        return await request.json()
    except ValueError as e:
        raise InvalidInputError(f"the body is not valid JSON: {e}") from None


def _parse(model, data):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError(_validation_message(e.errors())) from None


def _validation_message(errors) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
                     for err in errors)


def _form_field(form, name: str, default, kind=int):
    """A multipart form field as ``kind`` (int or float), ``default`` when absent or empty."""
    v = form.get(name)
    if v is None or v == "":
        return default
    try:
        return kind(v)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InvalidInputError(f"{name} must be {what}, got {str(v)[:40]!r}") from None


def _check_search(k: int, radius, mode: str, max_k: int) -> None:
    if mode not in ("semantic", "category"):
        raise InvalidInputError(f"mode must be semantic or category, got {mode!r}")
    if radius is None and not 1 <= k <= max_k:
        raise InvalidInputError(f"k must be 1 to {max_k}, got {k}")


MAX_RERANK = 100  # candidates per result: k * rerank feature rows are read per query


def _check_rerank(rerank, state: ServiceState) -> None:
    if rerank is None:
        return
    if not 1 <= rerank <= MAX_RERANK:
        raise InvalidInputError(f"rerank must be 1 to {MAX_RERANK}, got {rerank}")
    if not state.index.keeps_features:
        raise InvalidInputError("this index keeps no feature vectors to re-rank by (build it with --features)")


def _hex_code(code: str, state: ServiceState):
    try:
        raw = bytes.fromhex(code)
    except ValueError:
        raise InvalidInputError(f"code must be hexadecimal, got {code[:40]!r}") from None
    nbytes = state.index.semantic.nbytes
    if len(raw) != nbytes:
        raise InvalidInputError(f"code must be {nbytes} bytes ({2 * nbytes} hex digits) for this "
                                f"{state.index.bits}-bit index, got {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8)[None]


class Measure:
    """ASGI middleware: counts answered requests by method, route template and status, and times them."""

    def __init__(self, app, requests, latency):
        self.app, self.requests, self.latency = app, requests, latency

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


class BodyLimit:
    """ASGI middleware: refuses request bodies over ``limit`` bytes with 413, by their Content-Length before
    reading and by counting while reading (for chunked bodies or a lying header)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = error_response(413, f"the request body is {int(declared):,} bytes, over this server's "
                                      f"limit of {self.limit:,} (--max-upload-mb)")
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLargeError(f"the request body is over this server's limit of {self.limit:,} "
                                               "bytes (--max-upload-mb)")
            return message

        return await self.app(scope, limited, send)


_SEARCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}, "k": {"type": "integer", "default": 10},
        "radius": {"type": "integer"}, "mode": {"type": "string", "enum": ["semantic", "category"]},
        "threshold": {"type": "number", "default": 0.5}, "rerank": {"type": "integer"}}}},
    "application/json": {"schema": SearchBody.model_json_schema()}}}}
_ADD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": AddBody.model_json_schema()}}}}
