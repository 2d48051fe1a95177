"""task.encoding (0/1 or ±1 inputs) and task.drop_zero_input: the inputs against a brute-force
enumeration, the S/E bookkeeping, the config checks, and that every sampler reads the encoded
inputs (the GP kernel of ±1 inputs against a Monte-Carlo estimate over random networks)."""
from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from bayes_sgd.complexity import lz_complexity
from bayes_sgd.config import ConfigError, load_config
from bayes_sgd.gp import fcn_nngp_kernel_for, mc_kernel_stderr, mc_nngp_kernel
from bayes_sgd.models import FCN
from bayes_sgd.samplers import EvalLayout, GPProblem
from bayes_sgd.tasks import boolean_inputs, boolean_task, build_task, parse_target

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)


def brute_force(n, encoding):
    """All n-bit inputs in truth-table order (itertools.product over the encoded values)."""
    values = (0.0, 1.0) if encoding == "binary" else (-1.0, 1.0)
    return np.array(list(itertools.product(values, repeat=n)), np.float32)


@pytest.mark.parametrize("encoding", ["binary", "pm1"])
@pytest.mark.parametrize("n", [1, 3, 7])
def test_inputs_match_brute_force_enumeration(n, encoding):
    x = boolean_inputs(n, encoding)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, brute_force(n, encoding))


def test_bad_encoding_is_named():
    with pytest.raises(ValueError, match=r"^encoding: expected one of \['binary', 'pm1'\]"):
        boolean_inputs(3, "centered")


@pytest.mark.parametrize("kw", [dict(train_size=32, seed=3), dict(train_size=16, seed=0)])
def test_pm1_changes_only_the_inputs(kw):
    b = boolean_task(7, "and4", encoding="binary", **kw)
    p = boolean_task(7, "and4", encoding="pm1", **kw)
    ref = brute_force(7, "pm1")
    for name in ("y_train", "y_test", "train_index", "test_index"):
        np.testing.assert_array_equal(getattr(p, name), getattr(b, name))
    np.testing.assert_array_equal(p.x_train, ref[p.train_index])
    np.testing.assert_array_equal(p.x_test, ref[p.test_index])
    assert p.meta["target_table"] == b.meta["target_table"]
    assert p.meta["train_mask"] == b.meta["train_mask"] and p.meta["encoding"] == "pm1"


def test_quick_config_is_binary_and_unchanged():
    # the old default (quick_and4_n7) stays the 0/1 encoding with all 2^n inputs: the task
    # equals the brute-force 0/1 rows and the split the package always drew (16, seed 0)
    cfg = load_config(QUICK_CONFIG)
    assert (cfg.task.encoding, cfg.task.drop_zero_input) == ("binary", False)
    task = build_task(cfg.task)
    ref = brute_force(7, "binary")
    mask = np.zeros(128, bool)
    mask[np.random.default_rng(0).choice(128, 16, replace=False)] = True
    np.testing.assert_array_equal(task.train_index, np.flatnonzero(mask))
    np.testing.assert_array_equal(task.x_train, ref[mask])
    np.testing.assert_array_equal(task.x_test, ref[~mask])
    assert "encoding" not in task.meta and "dropped_inputs" not in task.meta


def test_default_config_is_binary_on_all_inputs():
    # the default (the authors' target 6, 0/1 inputs, all 128 of them [NNflags, NNdata])
    from bayes_sgd.reproduce import PAPER_S6_N7

    cfg = load_config()
    assert (cfg.task.encoding, cfg.task.drop_zero_input) == ("binary", False)
    task = build_task(cfg.task)
    ref = brute_force(7, "binary")
    mask = np.array([c == "1" for c in PAPER_S6_N7])
    np.testing.assert_array_equal(task.x_train, ref[mask])
    np.testing.assert_array_equal(task.x_test, ref[~mask])
    assert "encoding" not in task.meta and "dropped_inputs" not in task.meta


TABLE = parse_target("random:5", 7)


@pytest.mark.parametrize("seed", range(6))
def test_drop_zero_input_bookkeeping(seed):
    t = boolean_task(7, TABLE, train_size=32, seed=seed, drop_zero_input=True)
    ref = brute_force(7, "binary")
    assert t.m == 32 and t.n_test == 127 - 32
    full_s, full_e = t.table_index[t.train_index], t.table_index[t.test_index]
    # S and E partition inputs 1..127; input 0 is in neither
    assert sorted(np.concatenate([full_s, full_e]).tolist()) == list(range(1, 128))
    np.testing.assert_array_equal(t.x_train, ref[full_s])
    np.testing.assert_array_equal(t.x_test, ref[full_e])
    np.testing.assert_array_equal(t.y_train, TABLE[full_s])
    np.testing.assert_array_equal(t.y_test, TABLE[full_e])
    assert t.meta["train_mask"][0] == "0" and t.meta["train_mask"].count("1") == 32
    # C_LZ is taken on the 128-bit table: target on S and on the dropped input, f on E
    f = np.random.default_rng(seed).integers(0, 2, t.n_test).astype(np.uint8)
    full = t.full_table(f[None])[0]
    ref_table = TABLE.copy()
    ref_table[full_e] = f
    np.testing.assert_array_equal(full, ref_table)
    assert full[0] == TABLE[0]
    # the zero input's row is the one left out: no kept row is all-zero
    assert np.abs(np.concatenate([t.x_train, t.x_test])).sum(1).min() > 0


def test_drop_zero_input_with_the_target_on_e_has_the_targets_complexity():
    t = boolean_task(7, TABLE, train_size=32, seed=1, drop_zero_input=True)
    assert lz_complexity(t.full_table(t.y_test[None])[0]) == lz_complexity(TABLE)


def test_drop_zero_input_mask_and_size_limits():
    mask = "0" + "1" * 10 + "0" * 117
    t = boolean_task(7, TABLE, mask=mask, drop_zero_input=True)
    np.testing.assert_array_equal(t.table_index[t.train_index], np.arange(1, 11))
    with pytest.raises(ValueError, match=r"^mask: expected '0' at position 0"):
        boolean_task(7, TABLE, mask="1" + mask[1:], drop_zero_input=True)
    with pytest.raises(ValueError, match=r"^train_size: expected an integer in \[1, 126\]"):
        boolean_task(7, TABLE, train_size=127, drop_zero_input=True)
    t = boolean_task(7, TABLE, train_size=126, drop_zero_input=True)  # E = one input
    assert t.n_test == 1 and t.table_index[t.test_index][0] != 0
    with pytest.raises(ValueError, match="S and E must both be non-empty"):
        boolean_task(7, TABLE, mask="0" + "1" * 127, drop_zero_input=True)


@pytest.mark.parametrize("items, field", [
    (["task.encoding=centered"], "task.encoding: expected one of ['binary', 'pm1']"),
    (["task.drop_zero_input=1"], "task.drop_zero_input: expected true or false"),
    (["task.drop_zero_input=true", "task.encoding=pm1"], "task.drop_zero_input: expected false"),
    (["task.drop_zero_input=true", "samplers.rejection.record_prior=true"],
     "samplers.rejection.record_prior: expected false"),
    (["task.drop_zero_input=true", "task.train_size=127"], "task.train_size: expected an integer"),
    (["task.drop_zero_input=true", "task.train_mask=" + "1" + "0" * 127],
     "task.train_mask: expected '0' at position 0"),
    (["model.sigma_b=0", "samplers.gp.enabled=true", "samplers.gp.mode=conditional",
      "task.train_mask=" + "1" * 32 + "0" * 96, "task.train_size=32"],
     "samplers.gp.mode: 'conditional'"),
    (["task.kind=image", "task.encoding=pm1"], "task.encoding: expected 'binary'"),
    (["task.kind=image", "task.drop_zero_input=true"], "task.drop_zero_input: expected false"),
])
def test_config_errors_name_the_field(items, field):
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_CONFIG, items)
    assert str(e.value).startswith(field), str(e.value)


@pytest.mark.parametrize("items", [
    ["model.sigma_b=0", "samplers.gp.enabled=true", "task.drop_zero_input=true"],
    ["model.sigma_b=0", "samplers.gp.enabled=true", "task.encoding=pm1"],
    # the all-zero input kept: its kernel row is the limit 0 (issue 13), joint mode handles it
    ["model.sigma_b=0", "samplers.gp.enabled=true"],
    ["model.sigma_b=0", "samplers.gp.enabled=true", "samplers.gp.mode=conditional",
     "task.encoding=pm1", "task.train_mask=" + "1" * 32 + "0" * 96, "task.train_size=32"],
    ["task.encoding=pm1", "samplers.rejection.record_prior=true"],
])
def test_valid_combinations_load(items):
    load_config(QUICK_CONFIG, items)


@pytest.mark.parametrize("drop", [False, True])
def test_rejection_and_gp_read_the_encoded_inputs(drop):
    enc = "binary" if drop else "pm1"
    t = boolean_task(7, TABLE, train_size=20, seed=2, encoding=enc, drop_zero_input=drop)
    ref = brute_force(7, enc)
    kept = t.table_index if drop else np.arange(128)
    # rejection / SGD evaluation layout: every kept input in truth-table order, S and E in place
    lay = EvalLayout.for_task(t)
    np.testing.assert_array_equal(lay.x, ref[kept])
    np.testing.assert_array_equal(lay.x[lay.s_idx], t.x_train)
    np.testing.assert_array_equal(lay.x[lay.e_idx], t.x_test)
    # GP: the kernel is evaluated on the encoded rows of S then E
    seen = []

    def spy(X):
        seen.append(np.array(X))
        return np.eye(len(X))

    GPProblem.from_task(t, spy)
    np.testing.assert_array_equal(seen[0], ref[np.concatenate([kept[t.train_index],
                                                                kept[t.test_index]])])


def test_sgd_trainer_reads_the_encoded_inputs():
    # built as experiment.run_sgd builds it, from the config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import SGDSettings, SGDTrainer

    cfg = load_config(QUICK_CONFIG, ["task.encoding=pm1", "task.train_size=20", "task.train_seed=2"])
    t = build_task(cfg.task)
    model = build_model(cfg.model, t.input_shape)
    tr = SGDTrainer(model, t, SGDSettings.from_config(cfg.samplers.sgd), stream=jax.random.key(0))
    ref = brute_force(7, "pm1")
    np.testing.assert_array_equal(np.asarray(tr.x_s), ref[t.train_index])
    np.testing.assert_array_equal(np.asarray(tr.x_e), ref[t.test_index])


# Analytic NNGP kernel of the ±1 inputs the task feeds the GP against the Monte-Carlo kernel of
# random networks on the brute-force ±1 rows. One hidden layer: the MC estimate is unbiased
# for the NNGP kernel at any width; SE = sqrt((K_xx K_x'x' + K_xx'^2)/n) (Isserlis) times
# sqrt(1 + 2/width) for the finite-width kurtosis, as in test_gp_kernels.py. 5 SE over 78
# correlated entries: false-failure rate < 1e-4 (measured worst entry: 0.29 tolerances).
# The analytic kernel of the 0/1 rows is off by > 2 tolerances (10 SE), so the test resolves
# the encoding.
def test_gp_kernel_of_pm1_inputs_matches_monte_carlo():
    width, n_samples = 512, 6_000
    t = boolean_task(7, TABLE, mask="1" * 6 + "0" * 116 + "1" * 6, encoding="pm1")
    model = FCN(in_dim=7, widths=(width,), activation="relu", sigma_w=1.0, sigma_b=1.0)
    rows = t.train_index  # the 12 inputs of S: the first and the last 6 of the table
    X_task = t.x_train
    K = fcn_nngp_kernel_for(model, X_task)
    X_ref = brute_force(7, "pm1")[rows]
    K_mc = mc_nngp_kernel(model, X_ref, key=jax.random.key(11), n_samples=n_samples)
    tol = 5.0 * mc_kernel_stderr(K, n_samples) * np.sqrt(1 + 2 / width)
    assert np.all(np.abs(K_mc - K) <= tol), np.max(np.abs(K_mc - K) / tol)
    K_binary = fcn_nngp_kernel_for(model, brute_force(7, "binary")[rows])
    assert np.max(np.abs(K_mc - K_binary) / tol) > 2  # > 10 SE: measured 2.7 tolerances
