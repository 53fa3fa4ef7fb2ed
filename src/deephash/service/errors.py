"""The HTTP-only refusals, as ``DeephashError`` kinds so one handler turns every error into the same JSON."""

from ..errors import DeephashError


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
