"""Reading request bodies safely: the size limit (``BodyLimit``), JSON and multipart fields as typed values,
and uploaded images decoded only after their header passed the pixel limit. Shared by every route that reads
a body, so each refuses the same things with the same status (docs/serve.md, Safety)."""

from __future__ import annotations

import io

from fastapi import Request
from pydantic import ValidationError

from ..errors import CorruptFileError, InvalidInputError
from .errors import PayloadTooLargeError, error_response, validation_message


async def read_json(request: Request):
    try:
        return await request.json()
    except ValueError as e:
        raise InvalidInputError(f"the body is not valid JSON: {e}") from None


def parse(model, data):
    """``data`` as the pydantic ``model``; its errors are a 422 like every other bad value."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError(validation_message(e.errors())) from None


def form_field(form, name: str, default, kind=int):
    """A multipart form field as ``kind`` (int or float), ``default`` when absent or empty."""
    v = form.get(name)
    if v is None or v == "":
        return default
    try:
        return kind(v)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InvalidInputError(f"{name} must be {what}, got {str(v)[:40]!r}") from None


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
