"""Robust image decoding: any mode (RGB, L, LA, P, RGBA, CMYK, I;16, I, F) → uint8 RGB."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CorruptFileError, DeephashError, InvalidInputError, MissingFileError
from ..utils.io import display_path  # noqa: F401  (re-exported: data.display_path)

MAX_PIXELS_ENV = "DEEPHASH_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 64_000_000  # 64 Mpx: about 200 MB as RGB while decoding; Pillow's own bomb guard is ~179 Mpx

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``path`` to uint8 (H, W, 3), resized to ``size`` = (H, W) when given."""
    return decode_image(Path(path), size, str(path))


def max_pixels() -> int:
    """The largest image (width x height, after JPEG draft reduction) ``decode_image`` decodes: 64 Mpx, or the
    environment variable DEEPHASH_MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise InvalidInputError(f"{MAX_PIXELS_ENV} must be a positive integer, got {value!r}")
    return n


def decode_image(source: Path | bytes, size: tuple[int, int] | None = None, what: str = "image") -> np.ndarray:
    """Decode a file or in-memory bytes (e.g. an archive member); errors name ``what``.

    The image is turned upright by its EXIF orientation. Images above ``max_pixels()`` are refused before their
    pixels are decoded (a JPEG is first reduced by Pillow's draft mode towards ``size``, so a large photo that
    is being shrunk anyway decodes at 1/2, 1/4 or 1/8 of its size); Pillow's own decompression-bomb guard
    still refuses anything above its limit.
    """
    what = display_path(what)
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                if size is not None and img.format == "JPEG":  # either orientation must stay >= size
                    img.draft("RGB", (max(size), max(size)))
                w, h = img.size
                if w * h > limit:
                    raise InvalidInputError(f"image {what} has {w}x{h} = {w * h:,} pixels, above the limit of "
                                            f"{limit:,} (set {MAX_PIXELS_ENV} to allow more)")
                img.load()
                img = _to_rgb(ImageOps.exif_transpose(img))
    except DeephashError:
        raise
    except FileNotFoundError:
        raise MissingFileError(f"image not found: {what}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError,
            IndexError, KeyError, TypeError, ZeroDivisionError, struct_error) as e:
        raise CorruptFileError(f"cannot read image {what}: {e}") from None
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.array(img, dtype=np.uint8)


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"not a directory: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
