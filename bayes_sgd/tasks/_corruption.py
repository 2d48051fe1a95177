"""Label corruption of a training set S, shared by the Boolean and the image tasks.

Two modes, for round(fraction * |S|) labels of S chosen uniformly without replacement:

- ``"flip"``: each chosen label is inverted, y -> 1 - y.  Fraction 1 gives the complement of
  the target on S, which is exactly as simple as the target (the prior is symmetric under
  f -> 1 - f): *label inversion*, not random labels.
- ``"redraw"``: each chosen label is replaced by an independent fair coin, whatever it was, so
  about half of them change (the number changed is Binomial(k, 1/2)) and the new labels are
  independent of the true ones.  Fraction 1 gives fully random labels: the random-label
  experiments of Zhang et al. (2017) and of the paper's authors' code.
"""
from __future__ import annotations

import math

import numpy as np

CORRUPT_MODES = ("flip", "redraw")


def check_corruption(fraction, mode) -> None:
    if not isinstance(fraction, (int, float, np.floating)) or isinstance(fraction, bool) \
            or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"corrupt_fraction: expected a value in [0, 1], got {fraction!r}")
    if mode not in CORRUPT_MODES:
        raise ValueError(f"corrupt_mode: expected one of {list(CORRUPT_MODES)}, got {mode!r}")


def corrupt_labels(y: np.ndarray, fraction: float, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Corrupt the 0/1 labels ``y`` in place; -> the sorted positions chosen for corruption
    (under ``"redraw"`` about half of them keep their label)."""
    check_corruption(fraction, mode)
    k = math.floor(fraction * len(y) + 0.5)
    chosen = np.sort(rng.choice(len(y), k, replace=False))
    if mode == "flip":
        y[chosen] ^= 1
    else:
        y[chosen] = rng.integers(0, 2, k, dtype=np.uint8)
    return chosen


def corruption_rng(seed: int) -> np.random.Generator:
    """The corruption's own stream for a task seed: independent of the split's, so a corrupted
    task shares S and E with its clean twin."""
    return np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(2)[1])
