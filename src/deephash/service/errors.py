"""Every error the service answers, in one JSON shape: ``{"error": <HTTP reason>, "detail": <message>}``.

The HTTP-only refusals are ``DeephashError`` kinds (each with its status) so one handler answers them and the
library's own errors alike; anything unexpected is a 500 whose traceback goes to the server log only.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DeephashError

log = logging.getLogger("deephash.service")


class UnauthorizedError(DeephashError):
    """A write without the right ``Authorization: Bearer`` token."""

    status = 401


class ForbiddenError(DeephashError, PermissionError):
    """A write the server is not configured to accept, or a path outside the allowed root."""

    status = 403


class PayloadTooLargeError(DeephashError):
    """A request body over ``--max-upload-mb``, or an image over the pixel limit."""

    status = 413


class UnsupportedMediaError(DeephashError):
    """A request body of a content type the route does not read."""

    status = 415


def error_response(status: int, detail: str, headers=None) -> JSONResponse:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


def validation_message(errors) -> str:
    """Pydantic's errors as one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
                     for err in errors)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception a route raises (and FastAPI's own 404s and validation errors) as the one shape."""

    @app.exception_handler(DeephashError)
    async def deephash_error(request: Request, e: DeephashError):
        return error_response(e.status, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        return error_response(422, validation_message(e.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (details are in the server log)")
