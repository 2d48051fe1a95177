"""SIGINT/SIGTERM as an exception that samplers catch to save a checkpoint first.

An ``Interrupts`` object is made per run and passed to the samplers (no global state).  Inside
``with interrupts:`` a signal raises ``Interrupted`` at once, except while bookkeeping is held
(``critical()`` or ``hold()``): then it is recorded and raised when the held section ends, so a
checkpoint never lists chunks or runs whose counts it lacks (or the reverse).  A signal held for
more than ``hold_seconds`` is raised anyway, marked ``unsafe``: the sampler then keeps its last
periodic checkpoint instead of saving a half-updated state.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

__all__ = ["Interrupted", "Interrupts"]

HOLD_SECONDS = 5.0


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the samplers stopped at a consistent point."""


class Interrupts:
    """Signal state of one run: ``pending`` (the held signal's name), ``unsafe`` (raised by the
    fallback timer while held) and the hold depth."""

    def __init__(self, *, hold_seconds: float = HOLD_SECONDS):
        self.hold_seconds = hold_seconds
        self.holding = 0
        self.pending: str | None = None
        self.unsafe = False
        self._old: dict = {}
        self._old_alarm = None

    # ---- installing the handlers ---------------------------------------------------------------
    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.holding:
            self.pending = self.pending or name
            try:
                signal.signal(signal.SIGALRM, self._alarm)
                signal.setitimer(signal.ITIMER_REAL, self.hold_seconds)
            except (ValueError, OSError):
                pass
            return
        raise Interrupted(name)

    def _alarm(self, signum, frame):
        if self.pending:
            self.unsafe = True
            raise Interrupted(self.pending)

    def __enter__(self) -> "Interrupts":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        try:
            self._old_alarm = signal.getsignal(signal.SIGALRM)
        except ValueError:
            self._old_alarm = None
        self.pending, self.unsafe, self.holding = None, False, 0
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        if self._old and self._old_alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_alarm)
        self._old = {}
        self.pending, self.unsafe, self.holding = None, False, 0

    # ---- held sections -------------------------------------------------------------------------
    @contextmanager
    def critical(self, *, raise_pending: bool = True):
        """Hold signals for the duration (bookkeeping that must not be cut in half); a held
        signal is raised at the end, or dropped with ``raise_pending=False`` (the work it would
        interrupt is finished by then)."""
        with self.hold():
            yield
        if raise_pending:
            self.raise_pending()
        elif not self.holding:
            self.pending = None

    @contextmanager
    def hold(self):
        """Hold signals without raising a pending one at the end (the caller checks
        ``pending`` at its next consistent point, e.g. an SGD sync)."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1

    def raise_pending(self) -> None:
        if self.pending and not self.holding:
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
            except (ValueError, OSError):
                pass
            raise Interrupted(self.pending)
