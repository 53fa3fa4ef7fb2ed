"""``/v1/items``: read an indexed image (its metadata and code, its file, a thumbnail) and, with the token,
add images (uploads or files under ``--allow-root``) or remove one. Writes go through ``ServiceState.write``."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile

from ...errors import InvalidInputError
from ..bodies import decode_upload, parse, read_json
from ..deps import State
from ..errors import UnsupportedMediaError
from ..state import ServiceState

MAX_FILES = 64  # uploads per request


class AddBody(BaseModel):
    """Server-side image files to add, relative to (or under) the server's ``--allow-root``."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str]


_ADD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": AddBody.model_json_schema()}}}}

router = APIRouter(tags=["items"])


@router.get("/v1/items/{item_id}")
def item(item_id: int, state: State):
    """An indexed image's metadata (path, labels, anything stored with it) and its code in hex."""
    found = state.index.item(item_id)
    return {**found, "code": found["code"].tobytes().hex()}


@router.get("/v1/items/{item_id}/image", response_class=FileResponse)
def item_image(item_id: int, state: State):
    return FileResponse(state.item_path(item_id), headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/items/{item_id}/thumbnail", response_class=Response)
def item_thumbnail(item_id: int, state: State, size: int = 160):
    """A JPEG at most ``size`` pixels on its longer side (cached)."""
    return Response(state.thumbnail(item_id, size), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.post("/v1/items", status_code=201, openapi_extra=_ADD_BODY)
async def add_items(request: Request, state: State):
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
            images.append(await asyncio.to_thread(decode_upload, data, name, state.settings.max_pixels))
            metadata.append({"path": str(keep_upload(state, data, name)), "name": name})
    elif ctype.startswith("application/json"):
        body = parse(AddBody, await read_json(request))
        if not body.paths:
            raise InvalidInputError("'paths' is empty")
        images = [state.allowed_path(p) for p in body.paths]
        metadata = None
    else:
        raise UnsupportedMediaError(f"adding takes multipart/form-data or application/json, not {ctype!r}")
    res = await asyncio.to_thread(state.write, lambda idx: idx.add(images, metadata))
    return {"ids": [int(i) for i in res.ids], "failures": [{"input": str(i), "reason": r} for i, r in res.failures],
            "count": len(state.index)}


@router.delete("/v1/items/{item_id}")
async def remove_item(item_id: int, request: Request, state: State):
    """Remove an image from every part of the index; saved before the answer. Needs the token."""
    state.check_token(request.headers.get("authorization"))
    await asyncio.to_thread(state.write, lambda idx: idx.remove([item_id]))
    return {"removed": item_id, "count": len(state.index)}


def keep_upload(state: ServiceState, data: bytes, name: str) -> Path:
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
