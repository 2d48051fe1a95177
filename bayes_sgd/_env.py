"""Durations read from environment variables (one parser for every ``$BAYES_SGD_*_SECONDS``)."""
from __future__ import annotations

import os

__all__ = ["env_seconds"]


def env_seconds(name: str, default: float, *, below: float | None = None,
                error: type[Exception] = ValueError) -> float:
    """``$name`` as seconds > 0 (and < ``below`` when given), or ``default`` when unset or empty.

    A value that is not such a number raises ``error`` naming the variable, before any work.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and (below is None or value < below)):
        expected = "a number of seconds > 0" if below is None else f"seconds in (0, {below:g})"
        raise error(f"{name}: expected {expected}, got {text!r}")
    return value
