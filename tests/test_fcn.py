"""FCN: batched evaluation vs one network at a time vs plain numpy, and the NNGP prior.

Statistical tolerances.  Weight entries are i.i.d. N(0, s^2), so sum(w^2)/s^2 ~ chi2(N) exactly;
the test fails when the two-sided chi-square p-value is below 1e-6 (false-failure rate 1e-6 per
check, 2e-6 with the mean check, ~3e-5 over the whole file).  The mean is checked with the exact
z = sqrt(N) mean / s at |z| < 4.9 (two-sided 1e-6).  The output variance of a width-H network is
checked with the CLT for the sample variance: se = sqrt((m4 - s^4) / N) from the empirical
fourth central moment, |s^2 - V| < 5 se (normal approximation, false-failure rate ~6e-7 per
input; N = 20000 networks makes the approximation accurate).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayes_sgd.models import FCN
from bayes_sgd.tasks import boolean_inputs

@functools.lru_cache(maxsize=None)
def _jit_init(model):
    # jitted once per model: eager op-by-op dispatch and repeated compiles cost seconds each
    # on a busy 2-core machine
    return jax.jit(model.init, static_argnames="n")


def _init(model, key, n):
    return _jit_init(model)(key=key, n=n)


def _outputs(model, key, n, x):
    return jax.jit(lambda k, x: model.apply_batched(model.init(key=k, n=n), x))(key, x)


ARCHS = [  # (in_dim, widths, activation, sigma_w, sigma_b)
    (3, (4,), "relu", 1.0, 1.0),
    (7, (40, 40), "relu", 1.0, 1.0),
    (5, (6, 7, 3), "tanh", 1.5, 0.3),
    (4, (8,), "erf", 2.0, 0.0),
    (6, (5, 5), "linear", 0.7, 1.2),
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a[0]}-{a[1]}-{a[2]}")
def test_batched_equals_loop_and_numpy(arch, np_forward):
    in_dim, widths, act, sw, sb = arch
    model = FCN(in_dim, widths, act, sigma_w=sw, sigma_b=sb)
    if widths == (40, 40):  # the default architecture, through the library's own init
        params = _init(model, jax.random.key(7), 6)
    else:  # arbitrary parameters (saves an init compile per architecture)
        rng = np.random.default_rng(len(widths))
        params = tuple({"w": jnp.asarray(rng.normal(size=(6, i, o)), jnp.float32),
                        "b": jnp.asarray(rng.normal(size=(6, o)), jnp.float32)}
                       for i, o in model.layer_sizes)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(11, in_dim)), jnp.float32)
    batched = np.asarray(jax.jit(model.apply_batched)(params, x))
    apply_one = jax.jit(model.apply)
    assert batched.shape == (6, 11) and batched.dtype == np.float32
    for i in range(6):
        one = jax.tree_util.tree_map(lambda a: a[i], params)
        np.testing.assert_allclose(np.asarray(apply_one(one, x)), batched[i], rtol=1e-5, atol=1e-5)
        # float64 numpy reference; float32 accumulation error is ~1e-6 relative
        np.testing.assert_allclose(batched[i], np_forward(one, np.asarray(x), act), rtol=1e-4, atol=1e-4)


def test_param_shapes_and_count():
    model = FCN(7, (40, 40))
    params = _init(model, jax.random.key(0), 6)  # n = 6 as in the test above: no recompile
    shapes = [(l["w"].shape, l["b"].shape) for l in params]
    assert shapes == [((6, 7, 40), (6, 40)), ((6, 40, 40), (6, 40)), ((6, 40, 1), (6, 1))]
    assert model.n_params == 7 * 40 + 40 + 40 * 40 + 40 + 40 + 1
    assert model.n_params == sum(int(np.prod(a.shape[1:])) for a in jax.tree_util.tree_leaves(params))


def test_networks_in_a_batch_are_distinct_and_key_reproducible():
    model = FCN(10, (50, 20))  # the model of test_init_statistics[1.0-1.0]: compiled once
    a = _init(model, jax.random.key(1), 200)
    b = _init(model, jax.random.key(1), 200)
    c = _init(model, jax.random.key(2), 200)
    for la, lb, lc in zip(a, b, c):
        np.testing.assert_array_equal(la["w"], lb["w"])
        assert not np.array_equal(la["w"], lc["w"])
        w = np.asarray(la["w"]).reshape(200, -1)
        assert len({r.tobytes() for r in w}) == 200
        # networks are independent: correlation of two networks' weights ~ N(0, 1/size)
        assert abs(np.corrcoef(w[0], w[1])[0, 1]) < 5 / np.sqrt(w.shape[1])


def _chi2_two_sided(sum_sq_over_var, n):
    return 2 * min(stats.chi2.cdf(sum_sq_over_var, n), stats.chi2.sf(sum_sq_over_var, n))


@pytest.mark.parametrize("sigma_w, sigma_b", [(1.0, 1.0), (0.3, 0.0)])
def test_init_statistics(sigma_w, sigma_b):
    model = FCN(10, (50, 20), sigma_w=sigma_w, sigma_b=sigma_b)
    params = _init(model, jax.random.key(11), 200)
    for (fan_in, fan_out), layer in zip(model.layer_sizes, params):
        for name, std in (("w", sigma_w / np.sqrt(fan_in)), ("b", sigma_b)):
            a = np.asarray(layer[name], np.float64).ravel()
            if std == 0:
                assert not a.any()
                continue
            n = a.size
            p = _chi2_two_sided((a**2).sum() / std**2, n)
            assert p > 1e-6, (fan_in, name, a.std(), std)
            assert abs(np.sqrt(n) * a.mean() / std) < 4.9, (fan_in, name)
            # and the empirical std itself, within the 5-sigma band of sqrt(chi2 / n)
            assert a.std() == pytest.approx(std, rel=5 / np.sqrt(2 * n) + 1e-3)


@pytest.mark.parametrize("d, width, sigma_w, sigma_b", [(7, 32, 1.0, 1.0), (3, 64, 1.5, 0.0)])
def test_one_hidden_layer_relu_output_variance(d, width, sigma_w, sigma_b):
    """Var f(x) = sigma_b^2 + sigma_w^2 (sigma_b^2 + sigma_w^2 |x|^2 / d) / 2 at any width."""
    model = FCN(d, (width,), "relu", sigma_w=sigma_w, sigma_b=sigma_b)
    x = np.concatenate([boolean_inputs(d)[[0, 1, 2**d - 1]],
                        np.random.default_rng(d).normal(size=(2, d))]).astype(np.float32)
    out = np.asarray(_outputs(model, jax.random.key(d), 20_000, jnp.asarray(x)), np.float64)
    N = out.shape[0]
    for j in range(len(x)):
        v = sigma_b**2 + sigma_w**2 * (sigma_b**2 + sigma_w**2 * (x[j] ** 2).sum() / d) / 2
        c = out[:, j] - out[:, j].mean()
        s2 = (c**2).mean()
        se = np.sqrt(((c**4).mean() - s2**2) / N)
        assert abs(s2 - v) <= 5 * se + 1e-12, (j, s2, v, se)  # x = 0, sigma_b = 0: exactly 0
        assert abs(out[:, j].mean()) <= 5 * np.sqrt(v / N)  # zero-mean prior


# ---- train_apply: apply's outputs, a backward pass for small minibatches ----------------------

def _np_grad(params, x, c, act):
    """Float64 backprop of L = sum_k c_k f(x_k) through the FCN (independent of JAX)."""
    from scipy.special import erf
    phi, dphi = {
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        "erf": (erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-z ** 2)),
        "linear": (lambda z: z, np.ones_like),
    }[act]
    ws = [np.asarray(p["w"], np.float64) for p in params]
    bs = [np.asarray(p["b"], np.float64) for p in params]
    zs, hs = [], [np.asarray(x, np.float64)]
    for l, (w, b) in enumerate(zip(ws, bs)):
        zs.append(hs[-1] @ w + b)
        if l < len(ws) - 1:
            hs.append(phi(zs[-1]))
    g = np.asarray(c, np.float64)[:, None]  # dL/dz of the output layer
    grads = [None] * len(ws)
    for l in reversed(range(len(ws))):
        grads[l] = {"w": hs[l].T @ g, "b": g.sum(0)}
        if l:
            g = (g @ ws[l].T) * dphi(zs[l - 1])
    return grads


@pytest.mark.parametrize("rows", [1, 8, 16, 17])  # <= 16 rows: unrolled outer products; 17: dot
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a[0]}-{a[1]}-{a[2]}")
def test_train_apply_outputs_and_gradient(arch, rows):
    in_dim, widths, act, sw, sb = arch
    model = FCN(in_dim, widths, act, sigma_w=sw, sigma_b=sb)
    rng = np.random.default_rng(rows)
    params = tuple({"w": jnp.asarray(rng.normal(size=(i, o)), jnp.float32),
                    "b": jnp.asarray(rng.normal(size=(o,)), jnp.float32)}
                   for i, o in model.layer_sizes)
    x = jnp.asarray(rng.normal(size=(rows, in_dim)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(rows,)), jnp.float32)
    # outputs bit for bit (the fit check and the functions on E use apply)
    np.testing.assert_array_equal(np.asarray(jax.jit(model.train_apply)(params, x)),
                                  np.asarray(jax.jit(model.apply)(params, x)))
    grad = jax.jit(jax.grad(lambda p: jnp.sum(c * model.train_apply(p, x))))(params)
    ref = _np_grad(params, x, c, act)
    # float32 sums of <= 40 terms of O(1) values vs float64: relative error ~1e-6
    for g, r in zip(grad, ref):
        for k in ("w", "b"):
            np.testing.assert_allclose(np.asarray(g[k]), r[k], rtol=1e-4, atol=1e-4)
