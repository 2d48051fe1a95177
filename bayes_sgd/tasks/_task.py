"""The task: inputs, a binary target, and the split into training set S and test set E."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Task:
    """A binary classification task with a fixed, ordered test set E.

    A *function* is the bit string of a network's thresholded outputs (output > 0 -> 1) on
    ``x_test`` in this order; two networks with the same bit string are the same function.

    ``train_index`` / ``test_index`` (Boolean tasks) give the position of every S and E input
    among the task's inputs in truth-table order, so that C_LZ is computed on the whole table
    (target on S, f on E). When some inputs are in neither S nor E (``drop_zero_input``),
    ``table_index`` maps those positions to the full 2^n table and ``full_target`` holds the
    target there: ``full_table`` then gives the dropped inputs the target's bits.
    """

    name: str
    x_train: np.ndarray  # (m, *input_shape) float32
    y_train: np.ndarray  # (m,) uint8 in {0, 1}
    x_test: np.ndarray  # (k, *input_shape) float32
    y_test: np.ndarray  # (k,) uint8 in {0, 1}
    train_index: np.ndarray | None = None  # positions of S among the inputs (Boolean tasks)
    test_index: np.ndarray | None = None  # positions of E among the inputs (Boolean tasks)
    table_index: np.ndarray | None = None  # truth-table position of each kept input (if any dropped)
    full_target: np.ndarray | None = None  # the target's whole 2^n table (if any input dropped)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("y_train", "y_test"):
            y = getattr(self, name)
            if y.ndim != 1 or not np.isin(y, (0, 1)).all():
                raise ValueError(f"{name}: expected a 1-d array of 0/1 labels")
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("y_train, y_test: expected one label per input of x_train, x_test")
        if (self.table_index is None) != (self.full_target is None):
            raise ValueError("table_index: expected together with full_target")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def m(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def x_all(self) -> np.ndarray:
        """S then E, the order used by the GP joint mode."""
        return np.concatenate([self.x_train, self.x_test])

    @property
    def target_function(self) -> str:
        """The target's bit string on E: the function with zero test error."""
        return "".join("1" if b else "0" for b in self.y_test)

    def full_table(self, bits_on_test: np.ndarray) -> np.ndarray:
        """Bits for C_LZ: for Boolean tasks the whole truth table (target on S, f on E);
        otherwise the function on E itself.  ``bits_on_test`` is (..., k)."""
        bits_on_test = np.asarray(bits_on_test, dtype=np.uint8)
        if self.train_index is None:
            return bits_on_test
        if self.table_index is not None:  # inputs outside S and E carry the target's bits
            out = np.broadcast_to(np.asarray(self.full_target, np.uint8),
                                  bits_on_test.shape[:-1] + (len(self.full_target),)).copy()
            out[..., self.table_index[self.test_index]] = bits_on_test
            return out
        n = len(self.train_index) + len(self.test_index)
        out = np.empty(bits_on_test.shape[:-1] + (n,), np.uint8)
        out[..., self.train_index] = self.y_train
        out[..., self.test_index] = bits_on_test
        return out
