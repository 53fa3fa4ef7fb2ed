"""The index folder's writer lock: an exclusive ``fcntl.flock`` on ``<index>/.lock``, re-entrant within a thread.

Writers in different processes (or threads) take turns through it for their whole load-modify-save; the kernel
releases it when its holder dies, so a killed writer never leaves a stale lock. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from ...errors import DeephashError, InvalidInputError
from .errors import os_error

LOCK_NAME = ".lock"
LOCK_TIMEOUT_ENV = "DEEPHASH_LOCK_TIMEOUT"
LOCK_TIMEOUT = 60.0  # seconds a writer waits for another one (DEEPHASH_LOCK_TIMEOUT overrides)


class IndexLockedError(DeephashError):
    """Another writer held the index folder's lock for longer than the timeout."""

    status = 409


class _FolderLock:
    """One process's hold on one folder's lock: a re-entrant thread lock around the flock'ed file."""

    def __init__(self):
        self.thread_lock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_FOLDER_LOCKS: dict[str, _FolderLock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


def lock_timeout() -> float:
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return LOCK_TIMEOUT if value is None else float(value)
    except ValueError:
        raise InvalidInputError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None


@contextlib.contextmanager
def index_lock(path, timeout: float | None = None):
    """Hold the exclusive writer lock of index folder ``path`` (created if missing) for the ``with`` block.

    Re-entrant within a thread; other threads and processes wait up to ``timeout`` seconds (default
    ``LOCK_TIMEOUT`` or ``$DEEPHASH_LOCK_TIMEOUT``), then get ``IndexLockedError``. The lock is an
    ``fcntl.flock`` on ``<path>/.lock``: the kernel drops it when the holder exits or is killed."""
    path = Path(path)
    timeout = lock_timeout() if timeout is None else float(timeout)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(path, "lock", e) from None
    key = os.path.realpath(path)
    with _FOLDER_LOCKS_GUARD:
        held = _FOLDER_LOCKS.setdefault(key, _FolderLock())
    deadline = time.monotonic() + timeout
    if not held.thread_lock.acquire(timeout=max(timeout, 0)):
        raise _locked(path, timeout)
    try:
        if held.depth == 0:
            held.fd = _flock(path, deadline, timeout)
        held.depth += 1
        try:
            yield path
        finally:
            held.depth -= 1
            if held.depth == 0:
                os.close(held.fd)  # releases the flock
                held.fd = None
    finally:
        held.thread_lock.release()


def _flock(path: Path, deadline: float, timeout: float) -> int:
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise os_error(path, "lock", e) from None
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise _locked(path, timeout) from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.001)))
            delay = min(delay * 2, 0.1)


def _locked(path: Path, timeout: float) -> IndexLockedError:
    return IndexLockedError(f"index {path} is locked by another writer (waited {timeout:g} s; "
                            f"set {LOCK_TIMEOUT_ENV} to wait longer)")
