"""Complexity measures of binary strings (Dingle et al. 2018; Valle-Perez et al. 2019).

C_LZ(x) = log2(n) * [N_w(x) + N_w(reverse(x))] / 2, and log2(n) for the all-0 / all-1
strings, where N_w is the number of words in the Lempel-Ziv 1976 parsing computed with the
Kaspar-Schuster (1987) algorithm.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def _as_bits(bits) -> np.ndarray:
    if isinstance(bits, str):
        if not bits or set(bits) - {"0", "1"}:
            raise ValueError("bits: expected a non-empty string of '0'/'1'")
        return np.frombuffer(bits.encode(), np.uint8) - ord("0")
    arr = np.asarray(bits)
    if arr.ndim != 1 or arr.size == 0 or not np.isin(arr, (0, 1)).all():
        raise ValueError("bits: expected a non-empty 1-d array of 0/1")
    return arr.astype(np.uint8)


def lz76_words(bits) -> int:
    """Number of words N_w in the LZ76 parsing (Kaspar & Schuster 1987, Phys. Rev. A 36, 842)."""
    s = _as_bits(bits).tobytes()
    n = len(s)
    if n == 1:
        return 1
    i, k, l, k_max, c = 0, 1, 1, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            k_max = max(k, k_max)
            i += 1
            if i == l:  # no earlier start reproduces the component: a new word begins
                c += 1
                l += k_max
                if l + 1 > n:
                    break
                i, k, k_max = 0, 1, 1
            else:
                k = 1
    return c


def lz_complexity(bits) -> float:
    """C_LZ of a '0'/'1' string or 0/1 array (Dingle et al. 2018, eq. for C_LZ)."""
    arr = _as_bits(bits)
    n = arr.size
    log2n = math.log2(n) if n > 1 else 1.0
    if arr.min() == arr.max():
        return log2n
    return log2n * (lz76_words(arr) + lz76_words(arr[::-1])) / 2


def entropy(bits) -> float:
    """Shannon entropy (bits) of the 0/1 frequencies in the string."""
    arr = _as_bits(bits)
    p = arr.mean()
    if p in (0.0, 1.0):
        return 0.0
    return float(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))


def ones(bits) -> int:
    return int(_as_bits(bits).sum())


def lz_complexity_many(rows: Iterable) -> np.ndarray:
    return np.array([lz_complexity(r) for r in rows], dtype=float)
