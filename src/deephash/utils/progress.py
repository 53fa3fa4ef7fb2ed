"""Progress for long work: a tqdm bar on a terminal, and in a log file or a pipe (where a bar would write a
line for every update, or a carriage-return soup) a plain line every ``interval()`` seconds instead, with
the count, rate and ETA, so that a log shows a long step is alive and when it will end. A loop shorter than
the interval prints nothing, so short jobs keep short logs (commands print their own summary lines).

Every loop of the package goes through ``tqdm`` below: this is the one place that decides."""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm as _tqdm

from ..errors import InvalidInputError

INTERVAL_ENV = "DEEPHASH_PROGRESS_INTERVAL"
INTERVAL = 15.0  # seconds between log lines: often enough to see progress, rare enough to keep logs short
clock = time.monotonic  # replaced by tests (a fake clock)


def interactive() -> bool:
    """True when progress can be drawn: stderr is a terminal (``DEEPHASH_PROGRESS=1`` forces bars, ``0`` hides)."""
    forced = os.environ.get("DEEPHASH_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


def interval() -> float:
    """Seconds between the log lines of one loop: ``$DEEPHASH_PROGRESS_INTERVAL`` or ``INTERVAL``."""
    value = os.environ.get(INTERVAL_ENV)
    if value is None:
        return INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InvalidInputError(f"{INTERVAL_ENV} must be a positive number of seconds, got {value!r}")
    return seconds


def tqdm(iterable=None, *args, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm`` on a terminal; elsewhere a ``LogProgress`` (a line every ``interval()`` seconds).
    ``disable=True`` (the caller was asked to be quiet) or ``DEEPHASH_PROGRESS=0`` shows nothing."""
    if disable is True or os.environ.get("DEEPHASH_PROGRESS") == "0":
        return _tqdm(iterable, *args, disable=True, **kwargs)
    if interactive():
        return _tqdm(iterable, *args, disable=False, **kwargs)
    if args:  # tqdm's positional order: iterable, desc, total
        kwargs = {**dict(zip(("desc", "total"), args)), **kwargs}
    return LogProgress(iterable, **kwargs)


def duration(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LogProgress:
    """The part of tqdm's interface the package uses (iterate, ``update``, ``set_postfix``, ``set_description``,
    ``close``, ``with``), writing ``desc: n/total (p%), rate, elapsed, ETA; postfix`` to stderr at most once
    per ``every`` seconds, and a closing line only when it wrote one before (a short loop stays silent)."""

    def __init__(self, iterable=None, desc: str | None = None, total=None, unit: str = "it", initial=0,
                 every: float | None = None, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.n, self.initial = total, desc or "progress", initial, initial
        self.unit = "step" if unit.strip() == "it" else unit.strip()  # never "it/s": that reads as a tqdm bar
        self.every = interval() if every is None else every
        self.start = self.last = clock()
        self.postfix = ""
        self.lines = 0
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self):
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n=1) -> None:
        self.n += n
        now = clock()
        if now - self.last >= self.every:
            self._write(self.line(now))
            self.last = now

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc=None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def refresh(self) -> None:
        """Lines are written by time only."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines:  # a loop that was long enough to report says when it ended
            now = clock()
            self._write(f"{self.desc}: {self._count()} done in {duration(now - self.start)}, "
                        f"{self._rate(now)}" + (f"; {self.postfix}" if self.postfix else ""))

    def _count(self) -> str:
        return f"{self.n}/{self.total}" if self.total else f"{self.n}"

    def _rate(self, now: float) -> str:
        done, elapsed = self.n - self.initial, max(now - self.start, 1e-9)
        if done <= 0:
            return f"0 {self.unit}/s"
        rate = done / elapsed
        return f"{rate:.1f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s per {self.unit}"

    def line(self, now: float) -> str:
        elapsed = now - self.start
        text = f"{self.desc}: {self._count()}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", {self._rate(now)}, {duration(elapsed)} elapsed"
        done = self.n - self.initial
        if self.total and done > 0:
            text += f", ETA {duration((self.total - self.n) * elapsed / done)}"
        return text + (f"; {self.postfix}" if self.postfix else "")

    def _write(self, text: str) -> None:
        self.lines += 1
        print(text, file=sys.stderr, flush=True)
