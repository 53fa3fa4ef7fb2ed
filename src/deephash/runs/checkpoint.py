"""Checkpoints: written atomically, verified by sha256 and loaded without running code.

File layout: ``DEEPHASH-CKPT/1\\n`` + 64 hex digits of sha256(body) + ``\\n`` + body,
where body is a ``torch.save`` of the payload. A truncated or altered file fails the header or
digest check with a clear message instead of a deep unpickling error. The digest is no signature (anyone
can recompute it), so the body is read with ``torch.load(weights_only=True)``: only tensors and plain
data (dicts, lists, str, numbers, bool, None) are rebuilt, and a pickle that would call anything else
is refused. Payloads are converted to that plain form on save (``plain``); older checkpoints that hold
numpy scalars (per-epoch history) still load, allowing only numpy's scalar and dtype reconstructors.
The payload's ``format`` (``deephash-train/2``, or the older ``deephash-dsh/1`` / ``deephash-iah/1``) and
the types of its keys are checked on load (``check_payload``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..errors import CorruptFileError, DeephashError, MissingFileError
from ..utils.io import atomic_write

CKPT_FORMAT = "deephash-train/2"  # what every run writes
LEGACY_FORMATS = {"deephash-dsh/1": "dsh", "deephash-iah/1": "iah"}  # older payloads, by the method they hold

MAGIC = b"DEEPHASH-CKPT/1\n"
HEADER = len(MAGIC) + 65  # magic, 64 hex digits, newline

# what unpickling an older checkpoint's numpy scalars needs (the scalar reconstructor under its numpy 1 and 2
# names, dtypes and the numeric dtype classes); none of them can call arbitrary functions
_scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar
_NUMPY_SCALARS = [(_scalar, "numpy._core.multiarray.scalar"), (_scalar, "numpy.core.multiarray.scalar"), np.dtype,
                  *{type(np.dtype(t)) for t in "?bhilqBHILQefdgFDG"}]

# key -> accepted types, per format (all keys required); "cuda_rng" is optional
_COMMON = {"format": str, "config": dict, "bits": int, "class_names": (list, tuple), "model": dict}
_TRAINING = {"optimizer": dict, "epoch": int, "step": int, "history": list, "torch_rng": torch.Tensor}
SCHEMAS = {
    CKPT_FORMAT: {**_COMMON, **_TRAINING, "method": str, "method_state": dict},
    "deephash-dsh/1": _COMMON,
    "deephash-iah/1": _COMMON,
}
TRAINING_KEYS = tuple(_TRAINING)  # what a resume needs besides the model


def plain(obj):
    """``obj`` as what ``weights_only`` loading accepts: numpy scalars become Python numbers, numpy arrays
    tensors, paths strings, subclasses of str/int/float/bool their plain value; dicts (an OrderedDict and a
    state dict's ``_metadata`` kept), lists and tuples are converted item by item."""
    if obj is None or type(obj) in (str, int, float, bool) or isinstance(obj, (torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        out = (OrderedDict if isinstance(obj, OrderedDict) else dict)((k, plain(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    return obj  # dtypes, devices: accepted by weights_only as they are


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save(plain(payload), buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    try:
        atomic_write(path, lambda fh: (fh.write(MAGIC), fh.write(digest + b"\n"), fh.write(body)))
    except OSError as e:
        raise DeephashError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    return Path(path)


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _reason(e: Exception) -> str:
    """One line from torch's multi-line unpickling error: the global or opcode it refused."""
    lines = [re.sub(r"^.*WeightsUnpickler error:", "", s).strip() for s in str(e).splitlines()]
    lines = [s for s in lines if s and not s.startswith(_TORCH_BOILERPLATE)]
    return (lines[0] if lines else type(e).__name__)[:200]


def check_payload(payload, path) -> dict:
    """``payload`` if it has every key its format needs with the right types, else CorruptFileError naming ``path``."""
    if not isinstance(payload, dict):
        raise CorruptFileError(f"checkpoint {path} holds a {type(payload).__name__}, not a checkpoint payload")
    fmt = payload.get("format")
    if fmt not in SCHEMAS:
        raise CorruptFileError(f"checkpoint {path}: unknown format {fmt!r} (expected one of {', '.join(SCHEMAS)})")
    problems = []
    for key, types in SCHEMAS[fmt].items():
        if key not in payload:
            problems.append(f"{key} missing")
        elif not isinstance(payload[key], types) or (types is int and isinstance(payload[key], bool)):
            problems.append(f"{key} is a {type(payload[key]).__name__}")
    if not problems:
        if not all(isinstance(c, str) for c in payload["class_names"]):
            problems.append("class_names are not all strings")
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["model"].items()):
            problems.append("model is not a state dict of tensors")
        if "cuda_rng" in payload and not isinstance(payload["cuda_rng"], torch.Tensor):
            problems.append(f"cuda_rng is a {type(payload['cuda_rng']).__name__}")
    if problems:
        raise CorruptFileError(f"checkpoint {path} is not a valid {fmt} payload: {', '.join(problems)}")
    return payload


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint a path names: a run folder means its ``last.ckpt``."""
    path = Path(path)
    return path / "last.ckpt" if path.is_dir() else path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The verified payload of a checkpoint file (or run folder); see the module docstring."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptFileError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if not data.startswith(MAGIC):
        raise CorruptFileError(f"{path} is not a deephash checkpoint")
    head = len(MAGIC)
    digest, body = data[head:head + 64], data[HEADER:]
    if data[head + 64:HEADER] != b"\n" or hashlib.sha256(body).hexdigest().encode() != digest:
        raise CorruptFileError(f"checkpoint {path} is corrupt or truncated (checksum mismatch)")
    try:
        # torch < 2.5 has no safe_globals: there, numpy scalars in older checkpoints are refused too
        allow = getattr(torch.serialization, "safe_globals", None)
        with allow(_NUMPY_SCALARS) if allow else contextlib.nullcontext():
            payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CorruptFileError(f"checkpoint {path} holds objects other than tensors and plain data, refused "
                               f"(nothing in it was run): {_reason(e)}") from None
    except Exception as e:
        raise CorruptFileError(f"cannot read checkpoint {path}: {_reason(e)}") from None
    return plain(check_payload(payload, path))

