"""Boolean tasks: input order, presets, targets, the S/E split and the full truth table."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from bayes_sgd.complexity import lz_complexity
from bayes_sgd.config import load_config
from bayes_sgd.tasks import PRESETS, boolean_inputs, boolean_task, build_task, parse_target, train_mask

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)


def rows(n):
    """All n-bit tuples in truth-table order: row i = binary of i, most significant bit first."""
    return [tuple(int(c) for c in format(i, f"0{n}b")) for i in range(2**n)]


@pytest.mark.parametrize("n", range(1, 9))
def test_inputs_are_big_endian_binary(n):
    x = boolean_inputs(n)
    assert x.dtype == np.float32 and x.shape == (2**n, n)
    np.testing.assert_array_equal(x, np.array(rows(n), np.float32))
    # itertools.product over (0, 1) enumerates the same order
    np.testing.assert_array_equal(x, np.array(list(itertools.product((0, 1), repeat=n))))


def test_bit_5_of_a_3_bit_table_is_f_101():
    np.testing.assert_array_equal(boolean_inputs(3)[5], [1, 0, 1])
    table = "00000100"  # only bit 5 set
    task = boolean_task(3, table, mask="11111100")  # S = inputs 0..5
    i = list(task.train_index).index(5)
    np.testing.assert_array_equal(task.x_train[i], [1, 0, 1])
    assert task.y_train[i] == 1 and task.y_train.sum() == 1


DIRECT = {  # preset -> f(bits tuple)
    "zeros": lambda b: 0,
    "first_bit": lambda b: b[0],
    "last_bit": lambda b: b[-1],
    "majority": lambda b: int(sum(b) > len(b) / 2),
    "parity": lambda b: sum(b) % 2,
    "and2": lambda b: b[0] and b[1],
    "xor2": lambda b: b[0] != b[1],
    "and3": lambda b: b[0] and b[1] and b[2],
    "and4": lambda b: b[0] and b[1] and b[2] and b[3],
    "x1_and_xn": lambda b: b[0] and b[-1],
}
MIN_BITS = {"and2": 2, "xor2": 2, "and3": 3, "and4": 4}


def test_preset_list_is_documented():
    assert set(PRESETS) == set(DIRECT)


@pytest.mark.parametrize("name", sorted(DIRECT))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_presets_match_direct_formulas(name, n):
    if n < MIN_BITS.get(name, 1):
        with pytest.raises(ValueError, match="^target:"):
            parse_target(name, n)
        return
    want = np.array([int(bool(DIRECT[name](b))) for b in rows(n)], np.uint8)
    got = parse_target(name, n)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


def test_and4_n7_has_the_documented_complexity_and_ones():
    t = parse_target("and4", 7)
    assert t.sum() == 8  # README / config comment: 8 ones in 128
    assert lz_complexity(t) == 21.0  # README / config comment: C_LZ = 21


def test_truth_table_string_and_random_targets():
    np.testing.assert_array_equal(parse_target(" 0110 ", 2), [0, 1, 1, 0])
    r3 = parse_target("random:3", 7)
    assert r3.shape == (128,) and set(np.unique(r3)) <= {0, 1}
    np.testing.assert_array_equal(parse_target("random:3", 7), r3)  # reproducible
    assert (parse_target("random:4", 7) != r3).any()
    assert 40 < r3.sum() < 88  # Binomial(128, 1/2): |ones - 64| < 24 is a 4.2-sigma band


BAD_TARGETS = [  # (target, n, substrings the message must contain)
    ("0101", 3, ["target:", "8"]),
    ("0" * 127, 7, ["target:", "128", "127"]),
    ("0" * 129, 7, ["target:", "128"]),
    ("0120", 2, ["target:"]),
    ("", 2, ["target:"]),
    ("paper_target", 3, ["target:", "parity"]),  # lists the presets
    ("random:x", 3, ["target:", "random:SEED"]),
]


@pytest.mark.parametrize("target, n, parts", BAD_TARGETS, ids=[f"{t[:8]}-{n}" for t, n, _ in BAD_TARGETS])
def test_bad_targets(target, n, parts):
    with pytest.raises(ValueError) as e:
        boolean_task(n, target, train_size=2)
    for p in parts:
        assert p in str(e.value)


def test_array_target_of_wrong_length():
    with pytest.raises(ValueError, match=r"^target: expected 8 entries"):
        boolean_task(3, np.zeros(7, np.uint8), train_size=2)


# ---- the split ------------------------------------------------------------------------------

def test_train_mask_from_string():
    mask = "10110001"
    task = boolean_task(3, "parity", mask=mask)
    s_idx = [i for i, c in enumerate(mask) if c == "1"]
    e_idx = [i for i, c in enumerate(mask) if c == "0"]
    np.testing.assert_array_equal(task.train_index, s_idx)
    np.testing.assert_array_equal(task.test_index, e_idx)
    np.testing.assert_array_equal(task.x_train, np.array([rows(3)[i] for i in s_idx]))
    np.testing.assert_array_equal(task.x_test, np.array([rows(3)[i] for i in e_idx]))
    np.testing.assert_array_equal(task.y_train, [sum(rows(3)[i]) % 2 for i in s_idx])
    np.testing.assert_array_equal(task.y_test, [sum(rows(3)[i]) % 2 for i in e_idx])
    assert task.meta["train_mask"] == mask and task.meta["target_table"] == "01101001"
    assert task.target_function == "".join(str(sum(rows(3)[i]) % 2) for i in e_idx)
    assert task.m == 4 and task.n_test == 4 and task.input_shape == (3,)


@pytest.mark.parametrize("n, size, seed", [(3, 1, 0), (3, 7, 1), (5, 10, 2), (7, 32, 0), (7, 100, 9)])
def test_train_mask_from_size_and_seed(n, size, seed):
    m = train_mask(n, train_size=size, seed=seed)
    assert m.dtype == bool and m.shape == (2**n,) and m.sum() == size
    np.testing.assert_array_equal(train_mask(n, train_size=size, seed=seed), m)  # reproducible
    task = boolean_task(n, "zeros", train_size=size, seed=seed)
    s, e = set(task.train_index.tolist()), set(task.test_index.tolist())
    assert len(s) == size and len(e) == 2**n - size
    assert s.isdisjoint(e) and s | e == set(range(2**n))
    assert list(task.train_index) == sorted(s) and list(task.test_index) == sorted(e)
    np.testing.assert_array_equal(np.flatnonzero(m), task.train_index)


def test_different_seeds_give_different_splits():
    # two independent 32-subsets of 128 coincide with probability 1 / C(128, 32) ~ 1e-30
    assert (train_mask(7, train_size=32, seed=0) != train_mask(7, train_size=32, seed=1)).any()


BAD_MASKS = [  # (arguments, the argument the message must start with)
    (dict(mask="1010"), "^mask:"),  # wrong length
    (dict(mask="1010101x"), "^mask:"),
    (dict(mask="11111111"), "^mask:"),  # E empty
    (dict(mask="00000000"), "^mask:"),  # S empty
    (dict(train_size=0), "^train_size:"),
    (dict(train_size=8), "^train_size:"),
    (dict(train_size=None), "^train_size:"),
]


@pytest.mark.parametrize("kw, field", BAD_MASKS, ids=[str(k) for k, _ in BAD_MASKS])
def test_bad_masks(kw, field):
    with pytest.raises(ValueError, match=field):
        boolean_task(3, "parity", **kw)


def test_mask_overrides_size():
    task = boolean_task(3, "parity", train_size=5, mask="10000001")
    np.testing.assert_array_equal(task.train_index, [0, 7])


def test_full_table_puts_target_on_s_and_f_on_e():
    rng = np.random.default_rng(0)
    target = "".join(map(str, rng.integers(0, 2, 64)))
    task = boolean_task(6, target, train_size=20, seed=3)
    in_s = task.meta["train_mask"]
    f = rng.integers(0, 2, (5, task.n_test)).astype(np.uint8)
    got = task.full_table(f)
    assert got.shape == (5, 64) and got.dtype == np.uint8
    for r in range(5):
        it = iter(f[r])
        want = [int(target[i]) if in_s[i] == "1" else int(next(it)) for i in range(64)]
        np.testing.assert_array_equal(got[r], want)
    # a single function (1-d) and the target itself give the target table
    np.testing.assert_array_equal(task.full_table(task.y_test), [int(c) for c in target])
    # higher batch dims
    assert task.full_table(f.reshape(5, 1, -1)).shape == (5, 1, 64)


def test_build_task_from_quick_config():
    cfg = load_config(QUICK_CONFIG)
    task = build_task(cfg.task)
    ref = boolean_task(7, "and4", train_size=16, seed=0)
    np.testing.assert_array_equal(task.train_index, ref.train_index)
    np.testing.assert_array_equal(task.y_test, ref.y_test)
    assert task.m == 16 and task.n_test == 112
    # README: "1 of the 16 training labels is 1"
    assert task.y_train.sum() == 1
    task2 = build_task(load_config(QUICK_CONFIG, ["task.train_mask='" + "01" * 64 + "'",
                                                  "task.train_size=64"]).task)
    np.testing.assert_array_equal(task2.train_index, np.arange(1, 128, 2))


def test_build_task_from_default_config():
    """The default is the authors' target 6, f = x6 (bit 6 of 7, value 2 of row i), on their S."""
    from bayes_sgd.reproduce import PAPER_S6_N7

    task = build_task(load_config().task)
    s = np.array([c == "1" for c in PAPER_S6_N7])
    truth = (np.arange(128) >> 1) & 1  # x6 of row i = binary of i, most significant bit first
    assert (task.m, task.n_test) == (32, 96)
    np.testing.assert_array_equal(task.train_index, np.flatnonzero(s))
    np.testing.assert_array_equal(task.y_train, truth[s])
    np.testing.assert_array_equal(task.y_test, truth[~s])
    np.testing.assert_array_equal(task.x_train, np.array(rows(7))[s])
    # docs/reproduction.md: C_LZ 28.0, 64 ones, 17 of them in S
    assert (task.y_train.sum(), truth.sum()) == (17, 64)
    assert lz_complexity("".join(map(str, truth))) == 28.0
