"""How storage failures read: an OS or SQLite error as a DeephashError naming the index folder, and a data file
that a newer save deleted under a reader (``Vanished``: the loader re-reads the manifest once)."""

from __future__ import annotations

import errno
from pathlib import Path

from ...errors import CorruptFileError, DeephashError


def os_error(path: Path, what: str, e: Exception) -> DeephashError:
    """An OSError (or SQLite error) while reading or writing an index folder, as a DeephashError naming it."""
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or "full" in reason:
        reason += " (free some space or write the index elsewhere)"
    return DeephashError(f"cannot {what} index {path}: {reason}")


class Vanished(Exception):
    """A data file the manifest names is gone (a writer saved twice since the manifest was read)."""


def vanished_or_corrupt(p: Path, e: Exception) -> Exception:
    if not p.exists():
        return Vanished(p.name)
    return CorruptFileError(f"index {p.parent} is corrupt: {p.name} cannot be read: {e}")
