"""Where decoded datasets are cached (never inside the read-only source folders)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$DEEPHASH_CACHE``, else ``$XDG_CACHE_HOME/deephash``, else ``~/.cache/deephash``."""
    if env := os.environ.get("DEEPHASH_CACHE"):
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deephash"
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_key(path: str | os.PathLike) -> str:
    """A cheap identity for a source file: name, size and mtime (hashing 100s of MB each run is too slow)."""
    st = os.stat(path)
    return f"{Path(path).name}-{st.st_size}-{int(st.st_mtime)}"
