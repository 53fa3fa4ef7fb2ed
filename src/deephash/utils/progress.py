"""Progress bars for long work, only on a terminal: in a log file or a pipe they would write a new line for
every update, so there they stay silent (commands print their own summary lines)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm as _tqdm


def interactive() -> bool:
    """True when progress can be drawn: stderr is a terminal (``DEEPHASH_PROGRESS=1`` forces bars, ``0`` hides)."""
    forced = os.environ.get("DEEPHASH_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


def tqdm(iterable=None, *args, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm`` that is disabled when asked to be or when there is no terminal to draw on."""
    return _tqdm(iterable, *args, disable=disable or not interactive(), **kwargs)
