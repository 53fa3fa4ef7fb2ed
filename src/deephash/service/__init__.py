"""The HTTP service (``deephash serve``): a JSON API under ``/v1``, metrics and a web page over one
``retrieval.ImageIndex``. Needs the ``fastapi`` stack, so it is imported only by that command."""

from .app import create_app, serve
from .state import Settings

__all__ = ["Settings", "create_app", "serve"]
