"""Where decoded datasets are cached (never inside the read-only source folders)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """``$DEEPHASH_CACHE``, else ``$XDG_CACHE_HOME/deephash``, else ``~/.cache/deephash``; when the default cannot
    be created (no or read-only HOME, e.g. a service account) a per-user folder in the temp dir."""
    if env := os.environ.get("DEEPHASH_CACHE"):
        root = Path(env)
        root.mkdir(parents=True, exist_ok=True)
        return root
    try:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deephash"
        root.mkdir(parents=True, exist_ok=True)
        return root
    except (OSError, RuntimeError, KeyError):  # RuntimeError/KeyError: no home directory to expand
        root = Path(tempfile.gettempdir()) / f"deephash-cache-{os.getuid()}"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root


def file_key(path: str | os.PathLike) -> str:
    """A cheap identity for a source file: name, size and mtime (hashing 100s of MB each run is too slow)."""
    st = os.stat(path)
    return f"{Path(path).name}-{st.st_size}-{int(st.st_mtime)}"
