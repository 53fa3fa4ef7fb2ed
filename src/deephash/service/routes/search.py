"""``POST /v1/search``: one query by uploaded image (multipart) or by code or id (JSON). Arguments are checked
by the index's own ``check_search`` before a query waits in a micro-batch, so a bad one is refused alone."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile

from ...errors import InvalidInputError
from ..bodies import decode_upload, form_field, parse, read_json
from ..deps import Batchers, State
from ..errors import UnsupportedMediaError

MAX_RERANK = 100  # candidates per result: k * rerank feature rows are read per query


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


_SEARCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}, "k": {"type": "integer", "default": 10},
        "radius": {"type": "integer"}, "mode": {"type": "string", "enum": ["semantic", "category"]},
        "threshold": {"type": "number", "default": 0.5}, "rerank": {"type": "integer"}}}},
    "application/json": {"schema": SearchBody.model_json_schema()}}}}

router = APIRouter(tags=["search"])


@router.post("/v1/search", openapi_extra=_SEARCH_BODY)
async def search(request: Request, state: State, batchers: Batchers):
    """Rank the index for one query: an uploaded image (multipart field ``image``, form fields ``k``,
    ``radius``, ``mode``, ``threshold``, ``rerank``) or a JSON body with ``code`` (hex) or ``id``.
    ``rerank`` F: take the k*F nearest by Hamming distance, return the k most similar by feature cosine."""
    settings = state.settings
    limits = dict(max_k=settings.max_k, max_rerank=MAX_RERANK)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("a multipart search needs the query image in the file field 'image'")
        k, radius = form_field(form, "k", 10), form_field(form, "radius", None)
        mode, threshold = str(form.get("mode") or "semantic"), form_field(form, "threshold", 0.5, float)
        rerank = form_field(form, "rerank", None)
        state.index.check_search("images", k, radius, mode, rerank, **limits)
        name = upload.filename or "upload"
        pixels = await asyncio.to_thread(decode_upload, await upload.read(), name, settings.max_pixels)
        result = await batchers.images.submit((mode, k, radius, threshold, rerank), pixels)
        result.query = name
    elif ctype.startswith("application/json"):
        body = parse(SearchBody, await read_json(request))
        if (body.code is None) == (body.id is None):
            raise InvalidInputError("give exactly one of 'code' (hex) or 'id' in the JSON body")
        state.index.check_search("ids" if body.id is not None else "codes", body.k, body.radius, body.mode,
                                 body.rerank, **limits)
        if body.id is not None:
            result = (await asyncio.to_thread(state.index.search, ids=[body.id], k=body.k, radius=body.radius,
                                              mode=body.mode, threshold=body.threshold, rerank=body.rerank))[0]
        else:
            result = await batchers.codes.submit((body.k, body.radius), hex_code(body.code, state.index))
        result.query = f"id {body.id}" if body.id is not None else body.code
    else:
        raise UnsupportedMediaError("search takes multipart/form-data (an image) or application/json "
                                    f"(a code or id), not {ctype or 'an untyped body'!r}")
    return JSONResponse(result.to_dict())  # already plain JSON types: skips FastAPI's re-encoding


def hex_code(code: str, index) -> np.ndarray:
    """A query code given in hex, as one packed row; refused unless it is exactly this index's code size."""
    try:
        raw = bytes.fromhex(code)
    except ValueError:
        raise InvalidInputError(f"code must be hexadecimal, got {code[:40]!r}") from None
    if len(raw) != index.nbytes:
        raise InvalidInputError(f"code must be {index.nbytes} bytes ({2 * index.nbytes} hex digits) for this "
                                f"{index.bits}-bit index, got {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8)[None]
