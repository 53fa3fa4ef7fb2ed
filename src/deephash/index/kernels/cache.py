"""Where numba caches the compiled kernels: its own places when usable, else a private temp folder, else none.

Kept apart from the kernels so that every kernel module decorates with the same ``CACHE`` decision, taken once.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from numba.core import config as numba_config


def private_dir(path: Path) -> bool:
    """Create ``path`` (0700) if needed; True if it is a folder this user owns and only it can write (compiled
    code read from a folder others can write to could be theirs)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def numba_cache(source: str = __file__, fallback: Path | None = None) -> bool:
    """Whether the kernels can be cached on disk, choosing where when numba's own places are unusable.

    numba caches next to ``source`` (``__pycache__``) or under ``~/.cache/numba``; for a user whose HOME is
    missing or read-only next to a read-only install neither works, and ``cache=CACHE`` would then fail at
    import (``no locator available``) and with it every command. Then a private folder in the temp dir is
    used (``NUMBA_CACHE_DIR`` set by the user always wins), and when even that fails, kernels compile
    without a cache (slower start, same results)."""
    if numba_config.CACHE_DIR:
        return True
    try:
        from numba.core.caching import CacheImpl

        if any(loc.from_function(numba_cache, source) is not None for loc in CacheImpl._locator_classes):
            return True
    except (ImportError, AttributeError, TypeError):
        pass  # another numba: decide by our own fallback
    fallback = fallback or Path(tempfile.gettempdir()) / f"deephash-numba-{os.getuid()}"
    if private_dir(fallback):
        numba_config.CACHE_DIR = str(fallback)
        return True
    return False


CACHE = numba_cache()
