"""Boolean tasks on n bits: all 2^n inputs, a truth-table target, and a split into S and E.

Row i of the input matrix is the binary expansion of i, most significant bit first
(big-endian), so truth-table bit i is f(binary of i): bit 5 of a 3-bit table is f(1, 0, 1).

Encodings (``task.encoding``): ``binary`` feeds the bits b in {0, 1} to the network, ``pm1``
feeds 2b - 1 in {-1, +1} (the authors' ``--centering`` for the Boolean data set,
``generate_inputs_sample.py`` of guillefix/nn-pacbayes). The order of the rows, and so the truth
table, is the same for both.

``drop_zero_input`` leaves the all-zero input (row 0) out of both S and E, as the authors do
when sigma_b = 0 without centering: with no biases every network outputs exactly 0 there and
the NNGP kernel of that row is 0 (its angle to the other inputs undefined). C_LZ is still taken
on the whole 2^n table, whose bit 0 is then the target's (see ``Task.full_table``).

``corrupt_fraction`` / ``corrupt_mode`` corrupt round(fraction * |S|) labels of S (flipped or
redrawn uniformly, ``tasks._corruption``) after the split, from a stream of their own, so the
corrupted task has the clean task's S and E; E keeps the true labels, so test error is against
the truth.
"""
from __future__ import annotations

import numpy as np

from ._corruption import check_corruption, corrupt_labels, corruption_rng
from ._task import Task


ENCODINGS = ("binary", "pm1")


def boolean_inputs(n: int, encoding: str = "binary") -> np.ndarray:
    """(2^n, n) float32 matrix, row i = binary of i, big-endian: bits b ('binary') or 2b - 1
    ('pm1')."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: expected one of {list(ENCODINGS)}, got {encoding!r}")
    i = np.arange(2**n)[:, None]
    bits = ((i >> np.arange(n - 1, -1, -1)) & 1).astype(np.float32)
    return bits if encoding == "binary" else 2.0 * bits - 1.0


_PRESETS = {
    "zeros": lambda x: np.zeros(len(x), np.int64),
    "first_bit": lambda x: x[:, 0],
    "last_bit": lambda x: x[:, -1],
    "majority": lambda x: 2 * x.sum(1) > x.shape[1],
    "parity": lambda x: x.sum(1) % 2,
    "and2": lambda x: x[:, 0] & x[:, 1],
    "xor2": lambda x: x[:, 0] ^ x[:, 1],
    "and3": lambda x: x[:, 0] & x[:, 1] & x[:, 2],
    "and4": lambda x: x[:, 0] & x[:, 1] & x[:, 2] & x[:, 3],
    "x1_and_xn": lambda x: x[:, 0] & x[:, -1],
}
_MIN_BITS = {"and2": 2, "xor2": 2, "and3": 3, "and4": 4}
PRESETS = tuple(_PRESETS)


def _preset_tables(n: int) -> dict[str, np.ndarray]:
    x = boolean_inputs(n).astype(np.int64)
    return {k: np.asarray(f(x)).astype(np.uint8) for k, f in _PRESETS.items()
            if n >= _MIN_BITS.get(k, 1)}


def parse_target(target: str, n: int) -> np.ndarray:
    """A truth table from a '0'/'1' string of length 2^n, a preset name, or 'random:SEED'."""
    target = target.strip()
    if target.startswith("random:"):
        try:
            seed = int(target.split(":", 1)[1])
        except ValueError:
            seed = -1
        if seed < 0:
            raise ValueError(f"target: expected 'random:SEED' with an integer seed >= 0, "
                             f"got {target!r}")
        return np.random.default_rng(seed).integers(0, 2, 2**n).astype(np.uint8)
    presets = _preset_tables(n)
    if target in presets:
        return presets[target].astype(np.uint8)
    if set(target) <= {"0", "1"} and target:
        if len(target) != 2**n:
            raise ValueError(
                f"target: expected a truth table of 2^{n} = {2**n} '0'/'1' characters, "
                f"got {len(target)}")
        return (np.frombuffer(target.encode(), np.uint8) - ord("0")).astype(np.uint8)
    raise ValueError(
        f"target: expected a string of 2^{n} = {2**n} '0'/'1' characters, "
        f"'random:SEED' or one of {list(presets)}, got {target!r}")


def train_mask(n: int, *, train_size: int | None = None, seed: int = 0,
               mask: str | None = None, drop_zero_input: bool = False) -> np.ndarray:
    """Boolean mask over the 2^n inputs marking S (from a mask string or size + seed).

    With ``drop_zero_input`` S is drawn from inputs 1 .. 2^n - 1 only, and a mask string must
    leave input 0 out."""
    N = 2**n
    if mask:
        if len(mask) != N or set(mask) - {"0", "1"}:
            raise ValueError(f"mask: expected {N} '0'/'1' characters, got {mask!r:.40}")
        out = np.frombuffer(mask.encode(), np.uint8) == ord("1")
        if drop_zero_input and out[0]:
            raise ValueError("mask: expected '0' at position 0 (the all-zero input "
                             "is dropped, drop_zero_input), got '1'")
    elif not drop_zero_input:
        if train_size is None or not 1 <= train_size < N:
            raise ValueError(f"train_size: expected an integer in [1, {N - 1}], got {train_size}")
        out = np.zeros(N, bool)
        out[np.random.default_rng(seed).choice(N, train_size, replace=False)] = True
    else:
        if train_size is None or not 1 <= train_size < N - 1:
            raise ValueError(f"train_size: expected an integer in [1, {N - 2}] (input 0 is "
                             f"dropped, drop_zero_input), got {train_size}")
        out = np.zeros(N, bool)
        out[1 + np.random.default_rng(seed).choice(N - 1, train_size, replace=False)] = True
    kept = out[1:] if drop_zero_input else out
    if out.all() or not out.any() or kept.all():
        raise ValueError("mask: S and E must both be non-empty")
    return out


def boolean_task(n: int, target: str | np.ndarray, *, train_size: int | None = None,
                 seed: int = 0, mask: str | None = None, encoding: str = "binary",
                 drop_zero_input: bool = False, corrupt_fraction: float = 0.0,
                 corrupt_mode: str = "flip") -> Task:
    """S = the masked rows, E = the rest, both in truth-table order.

    With ``drop_zero_input`` input 0 is in neither S nor E: |S| + |E| = 2^n - 1, and
    ``train_index`` / ``test_index`` are positions among the kept inputs 1 .. 2^n - 1 (their
    truth-table positions are ``table_index[train_index]``).  With ``corrupt_fraction`` > 0
    the labels of S are corrupted (module docstring); ``meta["target_table"]`` is then the table
    the task uses (corrupted S, true E) and ``meta["clean_target_table"]`` the target's."""
    table = parse_target(target, n) if isinstance(target, str) else np.asarray(target, np.uint8)
    if table.shape != (2**n,):
        raise ValueError(f"target: expected {2**n} entries, got {table.shape}")
    check_corruption(corrupt_fraction, corrupt_mode)
    in_s = train_mask(n, train_size=train_size, seed=seed, mask=mask,
                      drop_zero_input=drop_zero_input)
    x = boolean_inputs(n, encoding)
    name = target if isinstance(target, str) and len(target) < 32 else "custom"
    meta = {"n": n, "train_mask": "".join("1" if b else "0" for b in in_s)}
    if encoding != "binary":
        meta["encoding"] = encoding
    # row of the truth table of each input the task keeps
    kept = np.arange(1, 2**n) if drop_zero_input else np.arange(2**n)
    tr, te = np.flatnonzero(in_s[kept]), np.flatnonzero(~in_s[kept])
    y_train = table[kept[tr]].copy()
    used = table
    if corrupt_fraction > 0:
        chosen = corrupt_labels(y_train, corrupt_fraction, corrupt_mode, corruption_rng(seed))
        used = table.copy()
        used[kept[tr]] = y_train
        name += f"_{corrupt_mode}{corrupt_fraction:g}"
        meta.update(clean_target_table="".join(map(str, table)),
                    corrupt_fraction=float(corrupt_fraction), corrupt_mode=corrupt_mode,
                    n_corrupted=int(len(chosen)),
                    n_labels_changed=int((y_train != table[kept[tr]]).sum()),
                    corrupted_index=chosen)  # positions in S chosen for corruption
    meta["target_table"] = "".join(map(str, used))
    if not drop_zero_input:
        return Task(name=f"boolean_n{n}_{name}", x_train=x[tr], y_train=y_train,
                    x_test=x[te], y_test=table[te], train_index=tr, test_index=te, meta=meta)
    meta["dropped_inputs"] = "0"
    return Task(name=f"boolean_n{n}_{name}", x_train=x[kept[tr]], y_train=y_train,
                x_test=x[kept[te]], y_test=table[kept[te]], train_index=tr, test_index=te,
                table_index=kept, full_target=used, meta=meta)
