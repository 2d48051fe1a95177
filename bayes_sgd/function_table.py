"""The tidy function table: one row per (sampler, function).

Columns: ``sampler``, ``function`` (bit string on E; on all 2^n inputs for ``prior``),
``count`` (with ``count_half0``/``count_half1`` for the split-half ceiling), ``p``,
``log10_p``, ``log10_p_err`` (GP estimates), ``lz`` (C_LZ of the full truth table: target on
S, f on E; nan beyond ``LZ_MAX_BITS`` = 2^12 bits), ``ones`` and ``test_error`` (fraction
of E where f differs from the target).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .complexity import LZ_MAX_BITS, lz_complexity_batch
from .counting import FunctionCounter, bits_to_strings, strings_to_bits, unpack_bits

COLUMNS = ["sampler", "function", "count", "count_half0", "count_half1", "p", "log10_p",
           "log10_p_err", "lz", "ones", "test_error"]


def counter_frame(sampler: str, counter: FunctionCounter, task, *, full_table: bool = False,
                  total: int | None = None, rows=None, min_count: int = 1) -> pd.DataFrame:
    """Rows for one sampler; ``p = count / total`` (total defaults to the counted samples).

    ``rows`` (a slice or index array into the counter's sorted table) and ``min_count`` select
    part of the table, e.g. to write a table of millions of functions in batches."""
    keys, counts = counter.table()
    total = counter.total if total is None else total
    if rows is not None:
        keys, counts = keys[rows], counts[rows]
    if min_count > 1:
        keep = counts.sum(1) >= min_count
        keys, counts = keys[keep], counts[keep]
    bits = unpack_bits(keys, counter.n_bits)
    c = counts.sum(1)
    p = c / total if total else np.full(len(c), np.nan)
    if full_table:
        lz_bits, err = bits, np.full(len(c), np.nan)
    else:
        lz_bits = task.full_table(bits)
        err = (bits != task.y_test).mean(1) if len(bits) else np.zeros(0)
    lz = _lz(lz_bits)
    return pd.DataFrame({
        "sampler": sampler, "function": bits_to_strings(bits), "count": c,
        "count_half0": counts[:, 0], "count_half1": counts[:, 1], "p": p,
        "log10_p": np.log10(np.where(p > 0, p, np.nan)), "log10_p_err": np.full(len(c), np.nan),
        "lz": lz,
        "ones": bits.sum(1).astype(np.int64), "test_error": err}, columns=COLUMNS)


def _lz(bits: np.ndarray) -> np.ndarray:
    """C_LZ of each row; nan for tables longer than ``LZ_MAX_BITS`` (Boolean n > 12), whose
    C_LZ would take seconds to hours per function."""
    if not len(bits):
        return np.zeros(0)
    if bits.shape[1] > LZ_MAX_BITS:
        return np.full(len(bits), np.nan)
    return lz_complexity_batch(bits)


def estimate_frame(sampler: str, functions: list[str], log10_p, log10_p_err, task) -> pd.DataFrame:
    """Rows for an estimator that scores given functions (e.g. the GP) instead of counting."""
    bits = strings_to_bits(list(functions)).reshape(len(functions), task.n_test)
    lz = _lz(task.full_table(bits))
    log10_p = np.asarray(log10_p, float)
    return pd.DataFrame({
        "sampler": sampler, "function": functions, "count": pd.NA, "count_half0": pd.NA,
        "count_half1": pd.NA, "p": 10.0 ** log10_p, "log10_p": log10_p,
        "log10_p_err": np.asarray(log10_p_err, float), "lz": lz,
        "ones": bits.sum(1).astype(np.int64),
        "test_error": (bits != task.y_test).mean(1) if len(bits) else []}, columns=COLUMNS)


def counter_frames(sampler: str, counter: FunctionCounter, task, *, batch: int = 1 << 18,
                   **kw):
    """``counter_frame`` of the whole table in batches of ``batch`` functions (bounded memory)."""
    n = len(counter)
    for start in range(0, n, batch):
        yield counter_frame(sampler, counter, task, rows=slice(start, start + batch), **kw)


def concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    for col in ("count", "count_half0", "count_half1"):
        df[col] = df[col].astype("Int64")
    return df
