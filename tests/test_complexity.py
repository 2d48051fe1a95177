"""C_LZ (Dingle et al. 2018) against the values in the issue and a brute-force LZ76 parser.

The reference parser below is written from the definition of the Lempel-Ziv (1976) production
history, not from the Kaspar-Schuster scan: starting at position p, the next word is the
shortest prefix s[p:p+L] of the remaining string that is NOT a substring of s[:p+L-1] (the
history plus the word minus its last symbol; the copy may overlap the word itself).  If every
prefix up to the end is reproducible, the remainder is a final (incomplete) word.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bayes_sgd.complexity import entropy, lz76_words, lz_complexity, lz_complexity_many, ones


def naive_lz76_words(s: str) -> int:
    p, words = 0, 0
    while p < len(s):
        L = 1
        while p + L <= len(s) and s[p:p + L] in s[:p + L - 1]:
            L += 1
        words += 1
        p += L
    return words


def naive_clz(s: str) -> float:
    n = len(s)
    if set(s) in ({"0"}, {"1"}):
        return math.log2(n) if n > 1 else 1.0
    return math.log2(n) * (naive_lz76_words(s) + naive_lz76_words(s[::-1])) / 2


# ---- the issue's values -------------------------------------------------------------------

ISSUE_VALUES = [
    ("0" * 128, 7.0),
    ("1" * 128, 7.0),
    ("01" * 64, 21.0),
    ("0" * 64 + "1" * 64, 21.0),
    ("0011" * 32, 28.0),
    ("1" + "0" * 127, 17.5),
    ("0" * 127 + "1", 17.5),
]


@pytest.mark.parametrize("s, expected", ISSUE_VALUES, ids=lambda v: v if isinstance(v, float) else f"{v[:8]}..{len(v)}")
def test_issue_values(s, expected):
    assert lz_complexity(s) == expected
    assert naive_clz(s) == expected  # the reference parser agrees with the issue too


# ---- brute force --------------------------------------------------------------------------

def test_reference_parser_textbook_example():
    # Kaspar & Schuster (1987): 0001101001000101 parses as 0 | 001 | 10 | 100 | 1000 | 101
    assert naive_lz76_words("0001101001000101") == 6
    assert lz76_words("0001101001000101") == 6


def test_words_match_brute_force_all_short_strings():
    mismatches = []
    for n in range(1, 13):
        for t in itertools.product("01", repeat=n):
            s = "".join(t)
            if lz76_words(s) != naive_lz76_words(s):
                mismatches.append((s, lz76_words(s), naive_lz76_words(s)))
    assert mismatches == []


@pytest.mark.parametrize("n", [13, 31, 64, 100, 128, 257])
def test_words_and_clz_match_brute_force_random_strings(n):
    rng = np.random.default_rng(n)
    for p1 in (0.5, 0.1, 0.9):  # balanced and skewed strings (long repeats)
        for _ in range(40):
            s = "".join(map(str, (rng.random(n) < p1).astype(int)))
            assert lz76_words(s) == naive_lz76_words(s), s
            assert lz_complexity(s) == pytest.approx(naive_clz(s), rel=1e-12), s


def test_clz_matches_brute_force_all_length_10():
    strings = ["".join(t) for t in itertools.product("01", repeat=10)]
    got = lz_complexity_many(strings)
    want = np.array([naive_clz(s) for s in strings])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_batched_words_match_brute_force_all_strings_up_to_12_bits():
    from bayes_sgd.complexity import lz76_words_batch

    for n in range(1, 13):
        strings = ["".join(t) for t in itertools.product("01", repeat=n)]
        bits = np.array([[int(ch) for ch in st] for st in strings], np.uint8)
        np.testing.assert_array_equal(lz76_words_batch(bits),
                                      [naive_lz76_words(st) for st in strings])


@pytest.mark.parametrize("n", [16, 128])
def test_batched_clz_equals_the_scalar_loop(n):
    """More rows than one compiled batch (the padded tail included), skewed and balanced."""
    from bayes_sgd.complexity import LZ_BATCH_ROWS, lz_complexity_batch

    rng = np.random.default_rng(n)
    bits = (rng.random((LZ_BATCH_ROWS + 300, n)) < rng.choice([0.03, 0.5, 0.97], (LZ_BATCH_ROWS + 300, 1))).astype(np.uint8)
    bits[:2] = [0], [1]  # constant strings: log2(n)
    got = lz_complexity_batch(bits)
    np.testing.assert_array_equal(got, [lz_complexity(b) for b in bits])
    assert got[0] == got[1] == np.log2(n)


def test_string_array_list_and_bool_inputs_agree():
    rng = np.random.default_rng(1)
    for n in (2, 7, 64, 128):
        a = rng.integers(0, 2, n)
        s = "".join(map(str, a))
        ref = lz_complexity(s)
        for variant in (a, a.astype(np.uint8), a.astype(bool), a.astype(float), a.tolist()):
            assert lz_complexity(variant) == ref
            assert lz76_words(variant) == lz76_words(s)


def test_single_bit_strings():
    # n = 1: log2(1) = 0 would zero every string; the convention keeps the factor at 1.
    assert lz76_words("0") == naive_lz76_words("0") == 1
    assert lz_complexity("1") == 1.0


# ---- entropy and ones -----------------------------------------------------------------------

@pytest.mark.parametrize("s", ["0", "1", "01", "0001", "0" * 128, "0" * 120 + "1" * 8,
                               "0110100110010110", "1" * 5 + "0" * 3])
def test_entropy_and_ones_direct_formulas(s):
    k, n = s.count("1"), len(s)
    p = k / n
    h = 0.0 if k in (0, n) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert entropy(s) == pytest.approx(h, abs=1e-15)
    assert ones(s) == k
    assert entropy(np.array(list(s), int)) == pytest.approx(h, abs=1e-15)


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [lz_complexity, lz76_words, entropy, ones])
@pytest.mark.parametrize("bad", ["", "0120", "01 1", "ab", np.array([], int), np.array([0, 2, 1]),
                                 np.array([[0, 1], [1, 0]]), [0.5, 1.0], np.array([-1, 0])],
                         ids=["empty", "digit2", "space", "letters", "empty_array", "value2",
                              "2d", "half", "minus1"])
def test_bad_input_raises(fn, bad):
    with pytest.raises(ValueError, match="bits"):
        fn(bad)
