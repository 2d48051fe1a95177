"""Rejection sampler of the Bayesian posterior P_B(f|S) with the 0-1 likelihood.

Draw theta from the initialisation prior, keep it iff the network fits S exactly, and count
the function on E of each kept network:  P_B(f|S) ~= #{kept with function f} / #kept.
Optionally the unconditional prior P(f) over the whole truth table is counted from the same
draws.  Work is split into chunks whose keys are ``fold_in(stream, chunk_index)``, so a run is
a deterministic function of (seed, chunk_size) however the chunks are scheduled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..counting import FunctionCounter
from ._common import EvalLayout, pack_bits_jax


@dataclass
class RejectionResult:
    posterior: FunctionCounter  # functions on E of networks that fit S
    prior: FunctionCounter | None  # full truth tables (if recorded)
    n_samples: int = 0
    n_accepted: int = 0
    chunks_done: set = field(default_factory=set)

    def merge(self, other: "RejectionResult") -> None:
        self.posterior.merge(other.posterior)
        if self.prior is not None and other.prior is not None:
            self.prior.merge(other.prior)
        self.n_samples += other.n_samples
        self.n_accepted += other.n_accepted
        self.chunks_done |= other.chunks_done


def make_chunk_fn(model, layout: EvalLayout, y_train: np.ndarray, chunk_size: int,
                  record_prior: bool):
    """``key -> (fits, packed_E of the fitting networks, packed_table)`` for one chunk.

    Without the prior, S is evaluated first and E only for the (rare) networks that fit S:
    at |S| = 32 of 128 inputs this does a quarter of the forward work of a full evaluation.
    """
    x = jnp.asarray(layout.x)
    x_s, x_e = x[layout.s_idx], x[layout.e_idx]
    s_idx, e_idx = jnp.asarray(layout.s_idx), jnp.asarray(layout.e_idx)
    y = jnp.asarray(y_train, bool)

    @jax.jit
    def full(key):
        params = model.init(key=key, n=chunk_size)
        bits = model.apply_batched(params, x) > 0
        fits = jnp.all(bits[:, s_idx] == y, axis=1)
        return fits, pack_bits_jax(bits[:, e_idx]), pack_bits_jax(bits)

    @jax.jit
    def on_s(key):
        params = model.init(key=key, n=chunk_size)
        fits = jnp.all((model.apply_batched(params, x_s) > 0) == y, axis=1)
        return fits, params

    @jax.jit
    def on_e(params, idx):
        sub = jax.tree_util.tree_map(lambda a: a[idx], params)
        return pack_bits_jax(model.apply_batched(sub, x_e) > 0)

    def chunk(key):
        if record_prior:
            fits, packed_e, packed_all = full(key)
            fits = np.asarray(fits)
            return fits, np.asarray(packed_e)[fits], np.asarray(packed_all)
        fits, params = on_s(key)
        fits = np.asarray(fits)
        idx = np.flatnonzero(fits)
        if len(idx) == 0:
            return fits, np.empty((0, (len(layout.e_idx) + 7) // 8), np.uint8), None
        # Pad to a power of two so that on_e compiles for a handful of shapes only.
        size = 1 << int(np.ceil(np.log2(len(idx))))
        padded = np.pad(idx, (0, size - len(idx)), mode="edge")
        return fits, np.asarray(on_e(params, padded))[: len(idx)], None

    return chunk


def default_chunk_size(model, n_inputs: int) -> int:
    """Networks per chunk so that activations of a chunk stay within ~32 MB (cache-friendly
    for small nets, bounded for large ones)."""
    width = max(getattr(model, "widths", (64,)) or (64,))
    per_net = 4 * n_inputs * width * 3 + 4 * model.n_params
    return int(np.clip(2 ** np.floor(np.log2(48e6 / per_net)), 64, 4096))


def run_rejection_chunks(chunk_fn, stream: jax.Array, chunk_ids, *, chunk_size: int,
                         n_samples: int, n_test: int, n_table: int | None,
                         progress=None) -> RejectionResult:
    """Run the given chunk indices (the last chunk of the run may be partial)."""
    res = RejectionResult(FunctionCounter(n_test),
                          FunctionCounter(n_table) if n_table else None)
    for c in chunk_ids:
        fits, packed_e, packed_all = chunk_fn(jax.random.fold_in(stream, c))
        n_valid = min(chunk_size, n_samples - c * chunk_size)
        fits = np.asarray(fits)
        if n_valid < chunk_size:  # partial last chunk: keep the first n_valid networks
            packed_e = packed_e[: int(fits[:n_valid].sum())]
            fits = fits[:n_valid]
        res.posterior.add_packed(packed_e, half=c % 2)
        if res.prior is not None:
            res.prior.add_packed(np.asarray(packed_all)[:n_valid], half=c % 2)
        res.n_samples += n_valid
        res.n_accepted += int(fits.sum())
        res.chunks_done.add(int(c))
        if progress is not None:
            progress(n_valid, int(fits.sum()))
    return res
