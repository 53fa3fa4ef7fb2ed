"""What the service holds: the open index, its settings, the writer lock and the thumbnail cache.

Searches read ``state.index`` without a lock (``HammingIndex`` swaps immutable snapshots, so a reader sees
the index before or after a write, never half of one). Every write goes through ``write``, the one place
that serialises writers and persists before the request is answered.
"""

from __future__ import annotations

import hmac
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeephashError, InvalidInputError, MissingFileError
from ..retrieval import ImageIndex, open_index
from .errors import ForbiddenError, UnauthorizedError

TOKEN_HELP = "start the server with --token TOKEN (or the DEEPHASH_TOKEN environment variable) to allow writes"


@dataclass
class Settings:
    index_dir: str
    token: str | None = None
    max_upload_mb: float = 20.0
    allow_root: str | None = None
    max_pixels: int = 40_000_000      # decoded images larger than this are refused (decompression bombs)
    batch_wait_ms: float = 5.0        # micro-batching: how long a batch waits for more image queries
    max_batch: int = 32
    max_k: int = 1000
    thumbnail_cache: int = 2048       # thumbnails kept in memory
    warm_up: bool = True              # load the model and search once before serving
    refresh_s: float = 1.0            # how often to look for changes other writers saved (0: never)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ServiceState:
    def __init__(self, settings: Settings, index: ImageIndex | None = None):
        self.settings = settings
        self.index = index if index is not None else open_index(settings.index_dir)
        self._write_lock = threading.Lock()
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()

    # ---- writes -------------------------------------------------------------------------------------

    def check_token(self, authorization: str | None) -> None:
        """Writes need ``Authorization: Bearer <token>``, compared in constant time."""
        token = self.settings.token
        if not token:
            raise ForbiddenError(f"this server accepts no writes: {TOKEN_HELP}")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise UnauthorizedError("writes need the header 'Authorization: Bearer <token>' with the server's token")

    def write(self, fn):
        """Run ``fn(index)`` (an add or remove) and save under the index folder's writer lock (writers in other
        processes, e.g. ``deephash index add``, take turns with the service); answers only once persisted."""
        with self._write_lock, self.index.update():
            return fn(self.index)

    def refresh(self) -> bool:
        """Pick up what other writers saved (another worker process, ``deephash index add``, ``deephash
        up``); skipped while this process is writing, whose own save is already in the index."""
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            return self.index.refresh()
        finally:
            self._write_lock.release()

    # ---- server-side paths --------------------------------------------------------------------------

    def allowed_path(self, path: str) -> Path:
        """A server-side file under ``--allow-root`` (after resolving ``..`` and symlinks), else 403."""
        root = self.settings.allow_root
        if not root:
            raise ForbiddenError("this server adds no server-side files: start it with --allow-root DIR")
        root = Path(root).resolve()
        p = Path(path)
        try:
            resolved = (p if p.is_absolute() else root / p).resolve()
            if not resolved.is_relative_to(root):
                raise ForbiddenError(f"path {path[:200]!r} is outside the allowed root")
            if not resolved.is_file():
                raise MissingFileError(f"no file {path[:200]!r} under the allowed root")
        except DeephashError:
            raise
        except (OSError, ValueError) as e:  # a name too long, a NUL byte
            raise InvalidInputError(f"path {path[:200]!r} is not a usable file name: {e.__class__.__name__}") from None
        return resolved

    # ---- item images --------------------------------------------------------------------------------

    def item_path(self, item_id: int) -> Path:
        path = self.index.item(item_id).get("path")  # unknown ids: 404
        if not path or not Path(path).is_file():
            raise MissingFileError(f"item {item_id} has no image file on the server")
        return Path(path)

    def thumbnail(self, item_id: int, size: int) -> bytes:
        """A JPEG at most ``size`` pixels on its longer side (kept in a bounded LRU cache)."""
        if not 16 <= size <= 512:
            raise InvalidInputError(f"thumbnail size must be 16 to 512 pixels, got {size}")
        key = (item_id, size)
        self.index.get_codes([item_id])  # removed ids are not served from the cache
        with self._thumbs_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        from PIL import Image

        from ..data.images import load_image

        img = Image.fromarray(load_image(self.item_path(item_id)))
        img.thumbnail((size, size), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        with self._thumbs_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > self.settings.thumbnail_cache:
                self._thumbs.popitem(last=False)
        return data
