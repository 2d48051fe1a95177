"""A corrupted truth table for the n-bit Boolean tasks (issue 15's width sweep).

This bakes *flipped* labels of S into a target string, which is how ``reproduce width_n7``
specifies its "10 % / 30 % label corruption".  A config can instead corrupt any task with
``task.corrupt_fraction`` and ``task.corrupt_mode`` ("flip" or "redraw", ``tasks._corruption``);
random-label experiments need "redraw", since flipping every label of S is label inversion.
"""
from __future__ import annotations

import numpy as np

__all__ = ["corrupted_target"]


def corrupted_target(target: str, *, n: int, train_size: int, train_seed: int,
                     fraction: float, seed: int = 0) -> str:
    """The truth table of ``target`` with round(fraction * |S|) of S's labels flipped (S as the
    Boolean task draws it for ``train_size`` / ``train_seed``; which ones: numpy
    ``default_rng(seed)``); E's labels stay the true ones, so test error is against the truth."""
    from .tasks import boolean_task

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction: expected a value in [0, 1], got {fraction!r}")
    task = boolean_task(n, target, train_size=train_size, seed=train_seed)
    table = np.empty(2 ** n, np.uint8)
    table[task.train_index] = task.y_train
    table[task.test_index] = task.y_test
    k = int(round(fraction * len(task.train_index)))
    flip = np.random.default_rng(seed).permutation(np.asarray(task.train_index))[:k]
    table[flip] ^= 1
    return "".join(map(str, table))
