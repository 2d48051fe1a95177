"""Shared pieces of the samplers: keys, the evaluation layout, bit packing on device."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..tasks import Task
from ._protocol import STREAM


def stream_key(seed: int, sampler: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), STREAM[sampler])


@dataclass(frozen=True, eq=False)
class EvalLayout:
    """Inputs evaluated once per network, and where S, E and the full table sit in them."""

    x: np.ndarray
    s_idx: np.ndarray
    e_idx: np.ndarray
    table_idx: np.ndarray | None  # columns of x in truth-table order (Boolean tasks only)

    @classmethod
    def for_task(cls, task: Task) -> "EvalLayout":
        if task.train_index is not None:
            n_all = len(task.train_index) + len(task.test_index)
            x = np.empty((n_all,) + task.input_shape, np.float32)
            x[task.train_index] = task.x_train
            x[task.test_index] = task.x_test
            return cls(x, np.asarray(task.train_index), np.asarray(task.test_index),
                       np.arange(n_all))
        m, k = task.m, task.n_test
        return cls(task.x_all.astype(np.float32), np.arange(m), m + np.arange(k), None)


def pack_bits_jax(bits: jax.Array) -> jax.Array:
    """(n, k) bool -> (n, ceil(k/8)) uint8, identical to ``np.packbits(axis=-1)``."""
    n, k = bits.shape
    pad = (-k) % 8
    b = jnp.pad(bits.astype(jnp.uint8), ((0, 0), (0, pad))).reshape(n, -1, 8)
    weights = jnp.array([128, 64, 32, 16, 8, 4, 2, 1], jnp.uint8)
    return jnp.sum(b * weights, axis=-1, dtype=jnp.uint8)
