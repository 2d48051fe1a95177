"""The SGD sampler: records, a plain-JAX re-run of single runs, slot independence, optimizers,
losses, divergence, unfitted runs and SGLD.

Compilation dominates the cost here (each SGDTrainer compiles its vmapped epoch), so trainers
are module fixtures shared between tests.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from bayes_sgd.models import FCN
from bayes_sgd.samplers import (SGDSettings, SGDTrainer, epoch_permutation, loss_fn, make_optimizer,
                                stream_key)
from bayes_sgd.tasks import boolean_task

# n = 7, the default experiment's task and model; batch 6 of |S| = 16 -> 3 steps per epoch, the
# last one padded with 2 zero-weight rows
TASK7 = boolean_task(7, "and4", train_size=16, seed=0)
MODEL7 = FCN(7, (40, 40))
SET7 = dict(n_runs=64, optimizer="sgd", lr=0.1, batch_size=6, loss="bce", max_epochs=400)
STREAM = stream_key(0, "sgd")


@pytest.fixture(scope="module")
def trainer64():
    return SGDTrainer(MODEL7, TASK7, SGDSettings(**SET7, slots=64), stream=STREAM)


@pytest.fixture(scope="module")
def res64(trainer64):
    return trainer64.run(range(64))


@pytest.fixture(scope="module")
def trainer16():
    return SGDTrainer(MODEL7, TASK7, SGDSettings(**SET7, slots=16), stream=STREAM)


@pytest.fixture(scope="module")
def res16(trainer16):
    return trainer16.run(range(64))


def test_records_are_consistent(res64):
    assert sorted(res64.records) == list(range(64))
    n_fit = 0
    for r, (fitted, fit_epoch, epochs, diverged) in res64.records.items():
        assert not diverged
        if fitted:
            n_fit += 1
            assert 0 <= fit_epoch <= SET7["max_epochs"]
            assert epochs == fit_epoch  # epochs_after_fit = 0: stops at the fitting boundary
        else:
            assert fit_epoch == -1 and epochs == SET7["max_epochs"]
    assert n_fit == res64.n_fitted == res64.counter.total
    assert n_fit >= 60  # README: every run fits on this task within ~100 epochs
    _, counts = res64.counter.table()
    fitted_ids = [r for r, v in res64.records.items() if v[0]]
    assert counts[:, 0].sum() == sum(r % 2 == 0 for r in fitted_ids)  # half = run id parity


def test_results_independent_of_slot_count(res64, res16):
    """16 slots are refilled four times over, 64 slots train all runs at once."""
    assert res16.records == res64.records
    for u, v in zip(res16.counter.table(), res64.counter.table()):
        np.testing.assert_array_equal(u, v)


# ---- a plain-JAX single-network re-run ---------------------------------------------------------

def _ref_init(key, widths=(7, 40, 40, 1), sigma_w=1.0, sigma_b=1.0):
    """The documented init: keys = split(key, 2L); W_l = sigma_w / sqrt(fan_in) * N(0, 1) of
    shape (1, fan_in, fan_out) from keys[2l], b_l = sigma_b * N(0, 1) from keys[2l + 1].
    (Jitted it equals the library's jitted init bit for bit; eager vs jitted differ by 1 ulp.)"""
    keys = jax.random.split(key, 2 * (len(widths) - 1))
    out = []
    for l, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        w = sigma_w / jnp.sqrt(jnp.float32(i)) * jax.random.normal(keys[2 * l], (1, i, o))
        b = sigma_b * jax.random.normal(keys[2 * l + 1], (1, o))
        out.append({"w": w[0], "b": b[0]})
    return tuple(out)


def _ref_forward(params, x):
    h = x
    for l, layer in enumerate(params):
        if l > 0:
            h = jax.nn.relu(h)
        h = h @ layer["w"] + layer["b"]
    return h[:, 0]


@functools.lru_cache(maxsize=None)
def _ref_step(lr):
    opt = optax.sgd(lr)

    @jax.jit
    def step(p, o, xb, yb, wb):
        def loss(p):
            return jnp.sum(wb * optax.sigmoid_binary_cross_entropy(_ref_forward(p, xb), yb)) / jnp.sum(wb)
        u, o = opt.update(jax.grad(loss)(p), o, p)
        return optax.apply_updates(p, u), o

    return opt, step


_ref_init_jit = jax.jit(_ref_init)
_ref_forward_jit = jax.jit(_ref_forward)


def _ref_permutation(key, m):
    """The documented minibatch order: rows sorted by their (hi, lo) 64-bit random key, ties
    by row index (numpy's lexsort on the bits, independent of the package's counting rank)."""
    hi, lo = np.asarray(jax.random.bits(key, (2, m), jnp.uint32))
    return np.lexsort((np.arange(m), lo, hi))


def _ref_run(run_id, *, lr, bs, max_epochs):
    """One run in a plain Python loop: check fit at each epoch boundary, else one epoch of
    minibatch SGD on a fresh permutation fold_in(fold_in(fold_in(stream, r), 1), epoch)."""
    run_key = jax.random.fold_in(STREAM, run_id)
    params = _ref_init_jit(jax.random.fold_in(run_key, 0))
    opt, step = _ref_step(lr)
    state = opt.init(params)
    x, y = jnp.asarray(TASK7.x_train), jnp.asarray(TASK7.y_train, jnp.float32)
    m = len(y)
    n_steps = -(-m // bs)
    fwd = _ref_forward_jit
    for epoch in range(max_epochs + 1):
        if np.array_equal(np.asarray(fwd(params, x)) > 0, np.asarray(TASK7.y_train) == 1):
            on_e = np.asarray(fwd(params, jnp.asarray(TASK7.x_test))) > 0
            return epoch, "".join("1" if b else "0" for b in on_e)
        if epoch == max_epochs:
            return None, None
        perm = _ref_permutation(jax.random.fold_in(jax.random.fold_in(run_key, 1), epoch), m)
        perm = np.concatenate([perm, np.zeros(n_steps * bs - m, perm.dtype)])
        w = np.concatenate([np.ones(m), np.zeros(n_steps * bs - m)]).astype(np.float32)
        for i in range(n_steps):
            idx = perm[i * bs:(i + 1) * bs]
            params, state = step(params, state, x[idx], y[idx], jnp.asarray(w[i * bs:(i + 1) * bs]))


@pytest.mark.parametrize("run_id", [0, 7, 50])
def test_single_run_matches_plain_jax_loop(run_id, trainer16, res64):
    fit_epoch, function = _ref_run(run_id, lr=SET7["lr"], bs=SET7["batch_size"],
                                   max_epochs=SET7["max_epochs"])
    one = trainer16.run([run_id])
    assert one.records[run_id] == res64.records[run_id]
    fitted, lib_fit_epoch, _, _ = one.records[run_id]
    assert fit_epoch is not None and fitted  # the reference loop verified 100 % accuracy on S
    assert lib_fit_epoch == fit_epoch
    assert one.counter.to_dict() == {function: 1}


# ---- optimizers and losses on an easy task ---------------------------------------------------

EASY = boolean_task(3, "first_bit", mask="10011001")  # S = {0, 3, 4, 7}: labels 0 0 1 1
EASY_MODEL = FCN(3, (16,))
# every optimizer once and both losses by default (one SGDTrainer compile each); the other
# loss of each optimizer under -m slow.  Learning rates checked to fit all of 64 runs within
# 50 epochs (max_epochs = 300 leaves a wide margin); sgd/momentum with MSE at lr >= 0.05 leave
# some runs unfitted after 300 epochs.
OPT_CASES = [  # (optimizer, loss, lr)
    ("sgd", "bce", 0.5),
    ("momentum", "mse", 0.02),
    ("adam", "bce", 0.05),
    ("adagrad", "mse", 0.1),
    ("rmsprop", "mse", 0.01),
]
OPT_CASES_SLOW = [("sgd", "mse", 0.02), ("momentum", "bce", 0.1), ("adam", "mse", 0.02),
                  ("adagrad", "bce", 0.3), ("rmsprop", "bce", 0.01)]


def _easy_run(optimizer, loss, lr, **kw):
    s = SGDSettings(n_runs=16, optimizer=optimizer, loss=loss, lr=lr, batch_size=2,
                    max_epochs=300, slots=16, **kw)
    return SGDTrainer(EASY_MODEL, EASY, s, stream=STREAM).run(range(16))


@pytest.fixture(scope="module")
def easy_sgd_bce():
    return _easy_run("sgd", "bce", 0.5)


def _check_all_fit(res):
    assert res.n_runs == 16
    assert res.n_fitted == 16, res.records
    assert res.counter.total == 16
    assert not any(v[3] for v in res.records.values())
    # every counted function is a function on E = {1, 2, 5, 6}; first_bit there is 0011
    assert all(len(f) == 4 for f in res.counter.to_dict())


@pytest.mark.parametrize("optimizer, loss, lr", OPT_CASES, ids=[f"{o}-{l}" for o, l, _ in OPT_CASES])
def test_optimizers_and_losses_fit_easy_target(optimizer, loss, lr, easy_sgd_bce):
    res = easy_sgd_bce if (optimizer, loss, lr) == OPT_CASES[0] else _easy_run(optimizer, loss, lr)
    _check_all_fit(res)
    # training did something: some run needed at least one epoch
    assert max(v[1] for v in res.records.values()) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, loss, lr", OPT_CASES_SLOW, ids=[f"{o}-{l}" for o, l, _ in OPT_CASES_SLOW])
def test_optimizers_with_other_loss_fit_easy_target(optimizer, loss, lr):
    _check_all_fit(_easy_run(optimizer, loss, lr))


def test_loss_functions_closed_form():
    out = jnp.array([-3.0, -0.2, 0.0, 0.4, 5.0])
    y = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(loss_fn("bce")(out, y),
                               np.log1p(np.exp(-np.asarray(out))) + (1 - np.asarray(y)) * np.asarray(out),
                               rtol=1e-6)
    np.testing.assert_allclose(loss_fn("mse")(out, y), (np.asarray(out) + 0.5 - np.asarray(y)) ** 2,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="^name: expected a loss"):
        loss_fn("hinge")
    with pytest.raises(ValueError, match="^name: expected an optimizer"):
        make_optimizer("lbfgs", 0.1)


# ---- training after the fit ------------------------------------------------------------------

AFTER = 20


@pytest.fixture(scope="module")
def after_hot():
    """SGLD (T = 2) that keeps training 20 epochs after the first fit of S."""
    s = SGDSettings(n_runs=16, lr=0.1, batch_size=2, max_epochs=300, slots=16,
                    epochs_after_fit=AFTER, sgld_temperature=2.0)
    return SGDTrainer(EASY_MODEL, EASY, s, stream=STREAM)


def test_epochs_after_fit_recorded(after_hot):
    res = after_hot.run(range(16))
    assert res.counter.total == res.n_fitted > 0
    for fitted, fit_epoch, epochs, diverged in res.records.values():
        assert not diverged and fit_epoch >= 0
        if fitted:  # AFTER epochs past the first fit, then on to a boundary that fits S
            assert fit_epoch + AFTER <= epochs <= 300
        else:  # the fit was lost and not regained before max_epochs
            assert epochs == 300


def test_runs_marked_fitted_fit_s_at_the_end(after_hot, np_forward):
    # the loop of SGDTrainer.run, keeping the final parameters of every slot
    st = after_hot.refill(after_hot.empty_state(), jnp.ones(16, bool), jnp.arange(16, dtype=jnp.int32))
    for _ in range(100):
        st = after_hot.run_epochs(st, 4)
        if np.asarray(st.done).all():
            break
    assert np.asarray(st.done).all()
    fitted = np.asarray(st.fits) & ~np.asarray(st.diverged)
    # SGLD at T = 2 loses the fit often, so some runs need more than AFTER epochs to regain it
    epochs, first = np.asarray(st.epoch), np.asarray(st.fit_epoch)
    assert fitted.sum() >= 8 and (epochs[fitted] > first[fitted] + AFTER).any()
    # independent check of 100 % training accuracy of the final networks, in numpy: exactly
    # the runs marked fitted classify S exactly
    for i in range(16):
        p = [{k: np.asarray(v)[i] for k, v in layer.items()} for layer in st.params]
        out = np_forward(p, EASY.x_train)
        assert np.array_equal(out > 0, EASY.y_train == 1) == fitted[i], i
    # run() marks the same runs fitted and counts exactly those
    res = after_hot.run(range(16))
    assert [res.records[i][0] for i in range(16)] == list(fitted)
    assert res.counter.total == fitted.sum()


def test_results_do_not_depend_on_the_sync_cadence(after_hot):
    """8 epochs per sync, 1 per sync, and the switch to 1 when syncs are slow
    (max_sync_seconds = 0) give the same records and counts: run r depends on r alone."""
    a = after_hot.run(range(16), epochs_per_sync=8)
    b = after_hot.run(range(16), epochs_per_sync=1)
    c = after_hot.run(range(16), epochs_per_sync=8, max_sync_seconds=0.0)
    assert a.records == b.records == c.records and len(a.records) == 16
    for r in (b, c):
        for x, y in zip(a.counter.table(), r.counter.table()):
            np.testing.assert_array_equal(x, y)


# ---- hard target: divergence, unfitted runs, SGLD noise ------------------------------------------

HARD = boolean_task(5, "parity", train_size=16, seed=1)
HARD_MODEL = FCN(5, (16,))


def test_divergence_is_recorded_not_counted():
    s = SGDSettings(n_runs=12, lr=1e6, loss="mse", batch_size=4, max_epochs=50, slots=12)
    res = SGDTrainer(HARD_MODEL, HARD, s, stream=STREAM).run(range(12))
    assert res.n_runs == 12
    for fitted, fit_epoch, epochs, diverged in res.records.values():
        assert diverged and not fitted and fit_epoch == -1
        assert epochs < 50  # stopped at divergence, not at max_epochs
    assert res.counter.total == 0 and res.n_fitted == 0


SGLD_LR, SGLD_T, SGLD_BS = 1e-9, 4.5e7, 4  # noise std per step sqrt(2 lr T) = 0.3; grad steps <= 1e-9


def _hard_trainer(temperature):
    s = SGDSettings(n_runs=12, lr=SGLD_LR, batch_size=SGLD_BS, max_epochs=1, slots=12,
                    sgld_temperature=temperature)
    return SGDTrainer(HARD_MODEL, HARD, s, stream=STREAM)


@pytest.fixture(scope="module")
def cold():
    return _hard_trainer(0.0)


@pytest.fixture(scope="module")
def hot():
    return _hard_trainer(SGLD_T)


def test_max_epochs_one_reports_unfitted_runs(cold):
    res = cold.run(range(12))
    assert sorted(res.records) == list(range(12))  # reported, not dropped
    for fitted, fit_epoch, epochs, diverged in res.records.values():
        assert not fitted and fit_epoch == -1 and epochs == 1 and not diverged
    assert res.counter.total == 0 and res.n_fitted == 0


def _one_epoch(trainer):
    state = trainer.refill(trainer.empty_state(), jnp.ones(12, bool), jnp.arange(12, dtype=jnp.int32))
    after = trainer.run_epochs(state, 1)
    assert not np.asarray(after.done).any() and np.all(np.asarray(after.epoch) == 1)
    delta = np.concatenate([np.ravel(np.asarray(b, np.float64) - np.asarray(a, np.float64)) for a, b in
                            zip(jax.tree_util.tree_leaves(state.params),
                                jax.tree_util.tree_leaves(after.params))])
    funcs = np.asarray(trainer.functions_on_test(after.params))
    return state, delta, funcs


def test_sgld_noise_has_variance_2_lr_T_per_step(cold, hot):
    """With lr -> 0 the gradient step vanishes and one epoch adds n_steps independent
    N(0, 2 lr T) kicks to every parameter: sum(delta^2) / (2 lr T n_steps) ~ chi2(#params).
    Fails at two-sided p < 1e-6 (false-failure rate 1e-6).  At T = 0 the same epoch moves the
    parameters by at most lr * |grad| ~ 1e-9, so the functions are those at initialisation."""
    s0, d_cold, f_cold = _one_epoch(cold)
    s1, d_hot, f_hot = _one_epoch(hot)
    for a, b in zip(jax.tree_util.tree_leaves(s0.params), jax.tree_util.tree_leaves(s1.params)):
        np.testing.assert_array_equal(a, b)  # same initialisations
    assert np.abs(d_cold).max() < 1e-6
    f_init = np.asarray(cold.functions_on_test(s0.params))
    np.testing.assert_array_equal(f_cold, f_init)
    # SGLD changes the outcome (deterministic under the fixed keys; most of these 12 random
    # nets are constant on E with a large output bias, which noise of this size rarely flips)
    assert (f_hot != f_cold).any(axis=1).sum() >= 3
    n_steps = math.ceil(HARD.m / SGLD_BS)
    var = 2 * SGLD_LR * SGLD_T * n_steps
    stat = (d_hot**2).sum() / var
    p = 2 * min(stats.chi2.cdf(stat, d_hot.size), stats.chi2.sf(stat, d_hot.size))
    assert p > 1e-6, (d_hot.var(), var)
    assert abs(d_hot.mean()) < 5 * math.sqrt(var / d_hot.size)


# ---- the minibatch order ---------------------------------------------------------------------

@pytest.mark.parametrize("m", [1, 5, 32, 256, 257, 1000])  # counting rank (<= 256) and sort paths
def test_epoch_permutation_is_its_documented_lexsort(m):
    """Rows in increasing (hi, lo, k) order of ``jax.random.bits(key, (2, m), uint32)``, as
    ``np.lexsort((k, lo, hi))`` computes it, on both paths (counting up to m = 256, sorting
    above) and for several keys."""
    for seed in range(3):
        key = jax.random.key(seed)
        hi, lo = np.asarray(jax.random.bits(key, (2, m), jnp.uint32))
        got = np.asarray(jax.jit(epoch_permutation, static_argnums=1)(key, m))
        np.testing.assert_array_equal(got, np.lexsort((np.arange(m), lo, hi)))


def test_epoch_permutation_is_uniform():
    """All 4! orders of m = 4 rows equally likely: chi-square on 48,000 keys (seeded).  The
    test fails if p < 1e-3, i.e. a uniform sampler fails with probability 1e-3 over seeds."""
    from scipy.stats import chisquare

    keys = jax.random.split(jax.random.key(123), 48_000)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: epoch_permutation(k, 4)))(keys))
    assert (np.sort(perms, axis=1) == np.arange(4)).all()
    codes = perms @ np.array([64, 16, 4, 1])
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 24
    assert chisquare(counts).pvalue > 1e-3


def test_adapted_sync_cadence():
    """``run(epochs_per_sync=0)``: 8 epochs per sync until 16 runs are recorded, then the power
    of two nearest their mean length / 24, in [8, 16].  Runs that never fit (lr = 0, a random
    target) last max_epochs = 300 each: 300 / 24 = 12.5 -> 16 (and 250 / 24 = 10.4 would -> 8)."""
    task = boolean_task(7, "random:3", train_size=16, seed=0)
    tr = SGDTrainer(FCN(7, (8,)), task, SGDSettings(n_runs=17, lr=0.0, batch_size=16,
                                                    max_epochs=300, slots=16), stream=STREAM)
    seen, run_epochs = [], tr.run_epochs

    def spy(state, n_epochs):
        seen.append(int(n_epochs))
        return run_epochs(state, n_epochs)

    tr.run_epochs = spy
    res = tr.run(range(17), epochs_per_sync=0, max_sync_seconds=1e9)
    assert [r[2] for r in res.records.values()] == [300] * 17 and res.n_fitted == 0
    switch = seen.index(16)
    assert set(seen[:switch]) == {8} and set(seen[switch:]) == {16}
    assert switch * 8 >= 300  # not before the first 16 runs ended
    assert sum(seen[switch:]) >= 300 - 8  # the 17th run trained (mostly) at 16 per sync

