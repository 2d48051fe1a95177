"""FunctionCounter against collections.Counter of '0'/'1' strings, and bit packing against a
hand-written big-endian packer."""
from __future__ import annotations

from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest

from bayes_sgd.counting import (FunctionCounter, bits_to_strings, pack_bits, strings_to_bits,
                                unpack_bits)
from bayes_sgd.samplers import pack_bits_jax


def strs(bits) -> list[str]:
    return ["".join(str(int(b)) for b in row) for row in np.asarray(bits)]


def hand_pack(bits: np.ndarray) -> np.ndarray:
    """Big-endian bytes: bit j of a row sits at 2^(7 - j % 8) of byte j // 8."""
    bits = np.asarray(bits, np.int64)
    n, k = bits.shape
    out = np.zeros((n, (k + 7) // 8), np.int64)
    for j in range(k):
        out[:, j // 8] += bits[:, j] << (7 - j % 8)
    return out.astype(np.uint8)


def counter_table(c: FunctionCounter) -> dict[str, tuple[int, int]]:
    keys, counts = c.table()
    return {s: (int(a), int(b)) for s, (a, b) in
            zip(strs(unpack_bits(keys, c.n_bits)), counts)}


def pool_samples(rng, n_bits, n_pool, n):
    pool = rng.integers(0, 2, (n_pool, n_bits), dtype=np.uint8)
    # Zipf-like weights: a few very frequent functions, a long tail of rare ones.
    w = 1.0 / np.arange(1, n_pool + 1)
    return pool[rng.choice(n_pool, n, p=w / w.sum())]


# ---- counts --------------------------------------------------------------------------------

CASES = [  # (n_bits, pool size, samples, chunk sizes drawn up to, pending_limit)
    (1, 2, 500, 37, 1),
    (7, 40, 3000, 100, 3),
    (20, 200, 5000, 400, 50),
    (96, 300, 4000, 333, 7),
    (128, 50, 2000, 250, 1 << 20),  # never flushes until read
]


@pytest.mark.parametrize("n_bits, n_pool, n, max_chunk, pending_limit", CASES)
def test_counts_per_half_match_collections_counter(n_bits, n_pool, n, max_chunk, pending_limit):
    rng = np.random.default_rng(n_bits)
    data = pool_samples(rng, n_bits, n_pool, n)
    c = FunctionCounter(n_bits, pending_limit=pending_limit)
    ref = [Counter(), Counter()]
    start = 0
    while start < n:
        stop = min(n, start + int(rng.integers(1, max_chunk + 1)))
        chunk = data[start:stop]
        if rng.random() < 0.5:  # whole chunk to one half
            half = int(rng.integers(0, 2))
            c.add_bits(chunk, half=half)
            ref[half].update(strs(chunk))
        else:  # per-row halves, through the packed entry point
            half = rng.integers(0, 2, len(chunk))
            c.add_packed(np.packbits(chunk, axis=-1), half=half)
            for s, h in zip(strs(chunk), half):
                ref[h][s] += 1
        start = stop
    want = {s: (ref[0][s], ref[1][s]) for s in set(ref[0]) | set(ref[1])}
    assert counter_table(c) == want
    assert c.total == n
    assert len(c) == len(want)
    assert c.to_dict() == dict(ref[0] + ref[1])


def test_keys_sorted_bytewise_and_unique():
    rng = np.random.default_rng(3)
    c = FunctionCounter(21, pending_limit=5)
    for _ in range(30):
        c.add_bits(rng.integers(0, 2, (17, 21)), half=1)
    keys, _ = c.table()
    as_bytes = [k.tobytes() for k in keys]
    assert as_bytes == sorted(set(as_bytes))


def test_merge_two_counters_and_add_counts():
    rng = np.random.default_rng(4)
    a, b = FunctionCounter(30, pending_limit=4), FunctionCounter(30, pending_limit=1000)
    da, db = pool_samples(rng, 30, 60, 800), pool_samples(rng, 30, 60, 900)
    a.add_bits(da[:400], 0), a.add_bits(da[400:], 1)
    b.add_bits(db, 1)
    a.merge(b)
    ref0 = Counter(strs(da[:400]))
    ref1 = Counter(strs(da[400:])) + Counter(strs(db))
    assert counter_table(a) == {s: (ref0[s], ref1[s]) for s in set(ref0) | set(ref1)}
    # counts without halves go to half 0
    d = FunctionCounter(30)
    keys, counts = b.table()
    d.add_counts(keys, counts.sum(1))
    assert counter_table(d) == {s: (n, 0) for s, n in Counter(strs(db)).items()}
    with pytest.raises(ValueError, match="different"):
        a.merge(FunctionCounter(31))


def test_merged_counter_is_independent_of_the_source():
    """Tables are merged in place on flush: a counter that merged another must not change when
    the other goes on counting (the reference is collections.Counter of the samples merged)."""
    rng = np.random.default_rng(5)
    a, b = FunctionCounter(20, pending_limit=3), FunctionCounter(20, pending_limit=3)
    d1, d2 = pool_samples(rng, 20, 40, 300), pool_samples(rng, 20, 40, 300)
    b.add_bits(d1, 0)
    a.merge(b)  # a holds b's table (pending)
    b.add_bits(d2, 0)  # b flushes into its own table
    b.add_bits(d2, 1)
    assert counter_table(a) == {s: (n, 0) for s, n in Counter(strs(d1)).items()}
    ref = Counter(strs(d1)) + Counter(strs(d2))
    assert counter_table(b) == {s: (ref[s], Counter(strs(d2))[s]) for s in ref}


def test_state_roundtrip():
    rng = np.random.default_rng(5)
    c = FunctionCounter(45, pending_limit=2)
    data = pool_samples(rng, 45, 100, 1000)
    c.add_bits(data, half=rng.integers(0, 2, 1000))
    st = c.state()
    # through a real npz file round trip, as the checkpoints do
    import io
    buf = io.BytesIO()
    np.savez(buf, **st)
    buf.seek(0)
    with np.load(buf) as z:
        back = FunctionCounter.from_state({k: z[k] for k in z.files})
    assert back.n_bits == 45
    assert counter_table(back) == counter_table(c)
    assert back.total == 1000


def test_from_state_takes_a_sorted_table_and_merges_anything_else():
    rng = np.random.default_rng(6)
    data = pool_samples(rng, 24, 50, 500)
    c = FunctionCounter(24)
    c.add_bits(data, 1)
    keys, counts = c.table()
    ref = {s: (0, n) for s, n in Counter(strs(data)).items()}
    assert counter_table(FunctionCounter.from_state(c.state())) == ref
    # rows out of order and repeated (not a table()): merged, not taken as they are
    shuffled = {"keys": np.concatenate([keys[::-1], keys[:3]]),
                "counts": np.concatenate([counts[::-1], counts[:3]]), "n_bits": 24}
    got = counter_table(FunctionCounter.from_state(shuffled))
    first3 = set(strs(unpack_bits(keys[:3], 24)))
    assert got == {s: (0, n * (2 if s in first3 else 1)) for s, (_, n) in ref.items()}


def test_functions_one_bit_apart_are_never_merged():
    """10^4 random 96-bit strings plus a copy of each with one random bit flipped (and some
    exact duplicates): every distinct string keeps its own exact count."""
    rng = np.random.default_rng(6)
    base = rng.integers(0, 2, (10_000, 96), dtype=np.uint8)
    flipped = base.copy()
    flipped[np.arange(10_000), rng.integers(0, 96, 10_000)] ^= 1
    dup = base[rng.integers(0, 10_000, 3000)]
    data = np.concatenate([base, flipped, dup])
    rng.shuffle(data)
    c = FunctionCounter(96, pending_limit=1000)
    for chunk in np.array_split(data, 37):
        c.add_bits(chunk)
    ref = Counter(strs(data))
    assert c.to_dict() == dict(ref)
    assert len(c) == len(ref)


def test_empty_and_bad_shapes():
    c = FunctionCounter(10)
    c.add_packed(np.empty((0, 2), np.uint8))
    assert c.total == 0 and len(c) == 0 and c.to_dict() == {}
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        c.add_packed(np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError):
        c.add_packed(np.zeros(2, np.uint8))


# ---- packing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 7, 8, 9, 13, 16, 31, 96, 127, 128])
def test_pack_unpack_roundtrip_vs_hand_packer(k):
    rng = np.random.default_rng(k)
    bits = rng.integers(0, 2, (50, k), dtype=np.uint8)
    packed = pack_bits(bits)
    np.testing.assert_array_equal(packed, hand_pack(bits))
    np.testing.assert_array_equal(packed, np.packbits(bits, axis=-1))
    np.testing.assert_array_equal(unpack_bits(packed, k), bits)
    assert bits_to_strings(bits) == strs(bits)
    np.testing.assert_array_equal(strings_to_bits(strs(bits)), bits)


@pytest.mark.parametrize("k", [1, 2, 5, 7, 8, 9, 12, 15, 17, 60, 96, 100, 128])
def test_pack_bits_jax_matches_numpy(k):
    rng = np.random.default_rng(100 + k)
    bits = rng.random((33, k)) < 0.5
    got = np.asarray(pack_bits_jax(jnp.asarray(bits)))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.packbits(bits, axis=-1))
    np.testing.assert_array_equal(got, hand_pack(bits))
