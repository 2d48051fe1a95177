"""Exact, streaming counts of functions (bit strings).

Functions are packed to bytes (``np.packbits``) and compared byte-for-byte, so no two
distinct functions can ever be merged (no hashing).  Counts are kept per *half* (samples
are assigned to half 0 or 1 by their chunk or run index) so that a split-half noise
ceiling can be computed without a second pass.  Chunks are first reduced with
``np.unique`` and pending uniques are merged into the sorted table whenever they exceed a
memory budget, so memory is bounded by the number of *distinct* functions (n_bytes + 16
bytes each, about twice that while merging), not by the number of samples.
"""
from __future__ import annotations

import numpy as np


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, k) 0/1 -> (n, ceil(k/8)) uint8, big-endian within bytes."""
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=-1)


def unpack_bits(packed: np.ndarray, n_bits: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=n_bits)


def bits_to_strings(bits: np.ndarray) -> list[str]:
    """(n, k) 0/1 -> list of '0'/'1' strings."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.size == 0:
        return []
    chars = (bits + ord("0")).astype(np.uint8)
    return [r.tobytes().decode() for r in chars]


def strings_to_bits(strings) -> np.ndarray:
    return np.array([np.frombuffer(s.encode(), np.uint8) - ord("0") for s in strings], np.uint8)


def _void(packed: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(packed)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


class FunctionCounter:
    """Exact counts of bit strings of fixed length ``n_bits``, split into two halves."""

    def __init__(self, n_bits: int, *, pending_limit: int = 1 << 20):
        self.n_bits = int(n_bits)
        self.n_bytes = (self.n_bits + 7) // 8
        self._keys = np.empty((0, self.n_bytes), np.uint8)
        self._counts = np.empty((0, 2), np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._pending_limit = pending_limit

    # -- adding ---------------------------------------------------------------------------
    def add_bits(self, bits: np.ndarray, half=0) -> None:
        self.add_packed(pack_bits(bits), half)

    def add_packed(self, packed: np.ndarray, half=0) -> None:
        """Add samples; ``half`` is 0/1 for all rows or a per-row 0/1 array."""
        packed = np.asarray(packed, np.uint8)
        if packed.ndim != 2 or packed.shape[1] != self.n_bytes:
            raise ValueError(f"packed: expected shape (n, {self.n_bytes}), got {packed.shape}")
        if len(packed) == 0:
            return
        half = np.broadcast_to(np.asarray(half, np.int64), (len(packed),))
        keys, inv = np.unique(_void(packed), return_inverse=True)
        counts = np.zeros((len(keys), 2), np.int64)
        np.add.at(counts, (inv.ravel(), half), 1)
        self._push(keys.view(np.uint8).reshape(-1, self.n_bytes), counts)

    def add_counts(self, packed: np.ndarray, counts: np.ndarray) -> None:
        """Merge another table: ``counts`` is (n, 2) per half (or (n,) for half 0)."""
        counts = np.array(counts, np.int64)  # a copy: tables are updated in place on flush
        if counts.ndim == 1:
            counts = np.stack([counts, np.zeros_like(counts)], axis=1)
        if len(packed):
            self._push(np.array(packed, np.uint8), counts)

    def merge(self, other: "FunctionCounter") -> None:
        if other.n_bits != self.n_bits:
            raise ValueError("cannot merge counters of different string lengths")
        keys, counts = other.table()
        self.add_counts(keys, counts)

    def _push(self, keys, counts):
        self._pending.append((keys, counts))
        self._pending_rows += len(keys)
        if self._pending_rows >= self._pending_limit:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        # Reduce the pending rows (small) first, then merge them into the sorted table in
        # place of a re-sort: the table is copied once (np.insert) and only if there are new
        # functions, so a flush needs ~1.5x the table's memory, not ~5x.
        keys = np.concatenate([k for k, _ in self._pending])
        counts = np.concatenate([c for _, c in self._pending])
        self._pending, self._pending_rows = [], 0
        uniq, inv = np.unique(_void(keys), return_inverse=True)
        add = np.zeros((len(uniq), 2), np.int64)
        np.add.at(add, inv.ravel(), counts)
        table = _void(self._keys)
        pos = np.searchsorted(table, uniq)
        seen = pos < len(table)
        seen[seen] = table[pos[seen]] == uniq[seen]
        np.add.at(self._counts, pos[seen], add[seen])
        if not seen.all():
            new = ~seen
            self._keys = np.insert(table, pos[new], uniq[new]).view(np.uint8).reshape(
                -1, self.n_bytes)
            del table  # the old keys go before the counts are copied: peak 1.5x the table
            # as 16-byte records: np.insert along axis 0 of an (n, 2) array makes extra copies
            rec = np.dtype((np.void, 16))
            self._counts = np.insert(
                np.ascontiguousarray(self._counts).view(rec).ravel(), pos[new],
                np.ascontiguousarray(add[new]).view(rec).ravel()).view(np.int64).reshape(-1, 2)

    # -- reading --------------------------------------------------------------------------
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(packed keys sorted bytewise, counts (n, 2) per half)."""
        self._flush()
        return self._keys, self._counts

    @property
    def total(self) -> int:
        self._flush()
        return int(self._counts.sum())

    def __len__(self) -> int:
        self._flush()
        return len(self._keys)

    def to_dict(self) -> dict[str, int]:
        keys, counts = self.table()
        return dict(zip(bits_to_strings(unpack_bits(keys, self.n_bits)), counts.sum(1).tolist()))

    # -- persistence (checkpoints) ------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        keys, counts = self.table()
        return {"keys": keys, "counts": counts, "n_bits": np.array(self.n_bits)}

    @classmethod
    def from_state(cls, state) -> "FunctionCounter":
        """The counter saved by ``state()`` (keys sorted and unique: taken as they are, so a
        checkpoint of 10^7 functions is not re-sorted on resume)."""
        c = cls(int(state["n_bits"]))
        keys = np.ascontiguousarray(state["keys"], np.uint8)
        counts = np.ascontiguousarray(state["counts"], np.int64)
        if keys.ndim != 2 or keys.shape[1] != c.n_bytes or counts.shape != (len(keys), 2):
            raise ValueError(f"state: expected keys (n, {c.n_bytes}) and counts (n, 2), got "
                             f"{keys.shape} and {counts.shape}")
        if not _strictly_increasing(keys):  # a table() is sorted and unique
            c.add_counts(keys, counts)
            return c
        c._keys, c._counts = keys, counts
        return c


def _strictly_increasing(keys: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether the rows of a (n, k) uint8 array are in strictly increasing bytewise order
    (checked in blocks of rows, so the temporaries stay small)."""
    rows = np.arange(min(block, max(len(keys) - 1, 0)))
    for start in range(0, len(keys) - 1, block):
        a, b = keys[start:start + block], keys[start + 1:start + block + 1]
        a = a[:len(b)]
        diff = a != b
        first = diff.argmax(1)
        r = rows[:len(b)]
        if not (diff[r, first] & (b[r, first] > a[r, first])).all():
            return False
    return True
