"""Checkpoints: written atomically and verified by sha256 on load.

File layout: ``DEEPHASH-CKPT/1\\n`` + 64 hex digits of sha256(body) + ``\\n`` + body,
where body is a ``torch.save`` of the payload. A truncated or altered file fails the
digest check with a clear message instead of a deep unpickling error. The payload's ``format``
(``deephash-train/2``, or the older ``deephash-dsh/1`` / ``deephash-iah/1``) is read by
``deephash.methods.load_trained``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from ..errors import CorruptFileError, MissingFileError
from ..utils.io import atomic_write

MAGIC = b"DEEPHASH-CKPT/1\n"


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    atomic_write(path, lambda fh: (fh.write(MAGIC), fh.write(digest + b"\n"), fh.write(body)))
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "last.ckpt"
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CorruptFileError(f"{path} is not a deephash checkpoint")
    head = len(MAGIC)
    digest, body = data[head:head + 64], data[head + 65:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CorruptFileError(f"checkpoint {path} is corrupt or truncated (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    except Exception as e:
        raise CorruptFileError(f"cannot read checkpoint {path}: {e}") from None


def model_from_checkpoint(ckpt: dict | str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model (any method) from the architecture recorded in the checkpoint, in eval mode."""
    from ..methods import model_of

    return model_of(ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt))[0]
