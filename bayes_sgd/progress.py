"""Progress for people and for logs: a tqdm bar on a terminal, plain lines otherwise.

``progress(total=..., desc=...)`` returns an object with tqdm's ``update`` / ``set_postfix`` /
``close`` (and iteration, context manager).  When stderr is a terminal it is a tqdm bar; when it
is not (a log file, CI, a pipe) a bar's ``\\r``-joined frames would make one unreadable line per
stage, so it writes a plain line every ``$BAYES_SGD_PROGRESS_SECONDS`` seconds (default 30) and
one when the stage ends::

    sgd: 4,096/10,000 run (41.0 %), 512 run/s, 8 s elapsed, fitted=4090
    sgd: done 10,000/10,000 run (100.0 %), 530 run/s, 19 s elapsed, fitted=9998
"""
from __future__ import annotations

import sys
import time

from ._env import env_seconds

__all__ = ["progress", "PlainProgress", "PROGRESS_SECONDS", "progress_seconds"]

PROGRESS_SECONDS = 30.0


def progress_seconds() -> float:
    """Seconds between plain progress lines: ``$BAYES_SGD_PROGRESS_SECONDS`` (> 0) or 30."""
    return env_seconds("BAYES_SGD_PROGRESS_SECONDS", PROGRESS_SECONDS)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", initial: int = 0,
             disable: bool = False, unit_scale: bool = False, stream=None, **tqdm_kwargs):
    """A progress bar for one stage (see the module docstring); ``disable`` shows nothing.
    ``tqdm_kwargs`` go to tqdm on a terminal."""
    stream = sys.stderr if stream is None else stream
    if disable or not _is_terminal(stream):
        return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                             disable=disable, stream=stream)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                unit_scale=unit_scale, file=stream, **{"dynamic_ncols": True, **tqdm_kwargs})


class PlainProgress:
    """tqdm's interface, writing a line every ``progress_seconds()`` and at ``close``."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", initial=0,
                 disable=False, stream=None, interval: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = int(initial)
        self.disable = disable
        self.stream = sys.stderr if stream is None else stream
        self.interval = progress_seconds() if interval is None else interval
        self._t0 = self._last = time.monotonic()
        self._postfix = ""
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            self._write("")

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            self._write("done " if self.total is None or self.n >= self.total else "stopped at ")

    def line(self, prefix: str = "") -> str:
        elapsed = time.monotonic() - self._t0
        done = f"{self.n:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
        if self.total:
            done += f" ({100.0 * self.n / self.total:.1f} %)"
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {prefix}{done}", f"{rate:,.0f} {self.unit}/s" if rate >= 10
                 else f"{rate:.2g} {self.unit}/s", f"{elapsed:,.0f} s elapsed"]
        if self._postfix:
            parts.append(self._postfix)
        return ", ".join(parts)

    def _write(self, prefix: str) -> None:
        try:
            print(self.line(prefix), file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed log must not stop the run
            pass
