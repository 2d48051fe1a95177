"""CNN: shapes of the paper's stack, a numpy/scipy reference forward pass, batching, the FCN
special case, and the prior's output variance/covariance against the analytic NNGP values."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import correlate

from bayes_sgd.models import CNN, FCN


# --- numpy reference (float64) ------------------------------------------------------------


def ref_conv(x, w, b, stride, padding):
    """NHWC x HWIO cross-correlation with TF's padding rule, via scipy.signal.correlate."""
    n, h, wd, _ = x.shape
    kh, kw, _, c_out = w.shape
    if padding == "SAME":
        pads = []
        for size, k in ((h, kh), (wd, kw)):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), *pads, (0, 0)))
    out = np.stack(
        [
            np.stack([sum(correlate(x[i, :, :, c], w[:, :, c, o], mode="valid") for c in range(x.shape[-1]))
                      for o in range(c_out)], axis=-1)
            for i in range(n)
        ]
    )
    return out[:, ::stride, ::stride] + b


def ref_maxpool(x):
    h, w = x.shape[1:3]
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    return x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2, -1).max(axis=(2, 4))


def ref_forward(model: CNN, params, x):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = np.asarray(x, np.float64)
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    for l in range(len(model.filters)):
        h = relu(ref_conv(h, p[l]["w"], p[l]["b"], model.strides[l][0], model.padding[l]))
        if model.intermediate_pooling[l]:
            h = ref_maxpool(h)
    h = {"avg": lambda v: v.mean((1, 2)), "max": lambda v: v.max((1, 2)), None: lambda v: v.reshape(len(v), -1)}[
        model.pooling](h)
    dense = p[len(model.filters):]
    for l, layer in enumerate(dense):
        h = h @ layer["w"] + layer["b"]
        if l < len(dense) - 1:
            h = relu(h)
    return h[:, 0]


def one(params, i):
    """Network i of a batch, as numpy (indexing in numpy avoids compiling a gather per leaf)."""
    return jax.tree.map(lambda a: np.asarray(a)[i], params)


# --- tests ---------------------------------------------------------------------------------


def test_paper_stack_shapes_28x28():
    m = CNN.paper((28, 28, 1))
    assert m.kernel_sizes == ((5, 5), (2, 2), (5, 5), (2, 2)) and m.padding == ("VALID", "SAME", "VALID", "SAME")
    assert m.pooling is None and m.strides == ((1, 1),) * 4
    assert CNN.paper((28, 28, 1), pooling="none") == m  # config spelling of "no pooling"
    assert m.feature_shapes == [(24, 24, 100), (24, 24, 100), (20, 20, 100), (20, 20, 100)]
    # by hand: 5*5*1*100+100, 2*2*100*100+100, 5*5*100*100+100, 2*2*100*100+100, 20*20*100+1
    assert m.n_params == 2600 + 40100 + 250100 + 40100 + 40001
    params = jax.eval_shape(lambda k: m.init(key=k, n=3), jax.random.key(0))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 3 * m.n_params
    out = jax.eval_shape(m.apply_batched, params, jax.ShapeDtypeStruct((7, 28, 28, 1), jnp.float32))
    assert out.shape == (3, 7)

    small = CNN.paper((28, 28), filters=4)
    p = small.init(key=jax.random.key(1), n=2)
    y = small.apply_batched(p, jnp.ones((5, 28, 28)))  # channel axis optional
    assert y.shape == (2, 5) and y.dtype == jnp.float32
    np.testing.assert_allclose(small.apply_batched(p, jnp.ones((5, 784))), y, rtol=1e-6)  # flattened too
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 28, 28, 1\)"):
        small.apply(one(p, 0), jnp.ones((5, 27, 28)))


def test_paper_stack_8x8():
    # 8 -> 4 (5x5 VALID) -> 4 (2x2 SAME) -> the second 5x5 VALID conv no longer fits
    with pytest.raises(ValueError, match=r"kernel_sizes\[2\]: a 5x5 VALID conv does not fit the 4x4"):
        CNN.paper((8, 8, 1))
    m = CNN.paper((8, 8, 1), filters=6, n_layers=2)
    assert m.feature_shapes == [(4, 4, 6), (4, 4, 6)]
    p = m.init(key=jax.random.key(0), n=4)
    assert m.apply_batched(p, jnp.zeros((9, 8, 8, 1))).shape == (4, 9)


def test_forward_matches_scipy_reference():
    # every feature in one stack: VALID/SAME, even kernel, stride 2, intermediate max-pool, dense
    m = CNN(input_shape=(7, 6, 2), filters=(3, 4, 2), kernel_sizes=(3, 2, 2), strides=(1, 1, 2),
            padding=("VALID", "SAME", "SAME"), intermediate_pooling=(False, True, False), dense_widths=(5,),
            sigma_w=1.3, sigma_b=0.4)
    assert m.feature_shapes == [(5, 4, 3), (3, 2, 4), (2, 1, 2)]
    params = m.init(key=jax.random.key(2), n=3)
    x = jax.random.normal(jax.random.key(3), (4, 7, 6, 2))
    batched = np.asarray(m.apply_batched(params, x))
    apply = jax.jit(m.apply)
    for i in range(3):
        single = np.asarray(apply(one(params, i), x))
        np.testing.assert_allclose(single, ref_forward(m, one(params, i), x), rtol=1e-4, atol=1e-5)
        # vmap over networks == a Python loop over single networks
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_global_pooling_matches_reference():
    kw = dict(input_shape=(5, 5, 1), filters=(3, 4), kernel_sizes=(2, 3), padding=("SAME", "VALID"),
              dense_widths=(3,))
    avg, mx = CNN(pooling="avg", **kw), CNN(pooling="max", **kw)
    assert avg.readout_dim == mx.readout_dim == 4
    params = avg.init(key=jax.random.key(4), n=2)  # same parameter shapes for both
    x = jax.random.normal(jax.random.key(5), (3, 5, 5, 1))
    for m in (avg, mx):
        out = np.asarray(m.apply_batched(params, x))
        for i in range(2):
            np.testing.assert_allclose(out[i], ref_forward(m, one(params, i), x), rtol=1e-4, atol=1e-5)


def test_full_size_kernel_is_an_fcn():
    # a VALID conv whose kernel covers the whole image is a dense layer on the NHWC-flattened input
    cnn = CNN(input_shape=(4, 3, 2), filters=(7,), kernel_sizes=((4, 3),), dense_widths=(5,), sigma_b=0.5)
    fcn = FCN(in_dim=24, widths=(7, 5), sigma_b=0.5)
    p = cnn.init(key=jax.random.key(4), n=2)
    p_fcn = ({"w": p[0]["w"].reshape(2, 24, 7), "b": p[0]["b"]}, *p[1:])
    x = jax.random.normal(jax.random.key(5), (6, 4, 3, 2))
    np.testing.assert_allclose(cnn.apply_batched(p, x), fcn.apply_batched(p_fcn, x.reshape(6, -1)), rtol=1e-5,
                               atol=1e-6)
    assert cnn.n_params == fcn.n_params


def test_prior_output_moments_match_analytic_nngp():
    """One conv layer (k=3, VALID, 32 filters) + dense readout, relu, at init.

    z_p ~ N(0, q_p), q_p = sb^2 + sw^2 |patch_p|^2 / (k k C_in), and f = v . relu(z) + b with
    v ~ N(0, sw^2 / D), so Var f = sb^2 + sw^2 mean_p q_p / 2 and, for two inputs,
    Cov = sb^2 + sw^2 mean_p sqrt(q_p q'_p)/(2 pi) (sin t + (pi - t) cos t), cos t = c_p / sqrt(q_p q'_p)
    (arc-cosine kernel). Tolerance: 4 Monte-Carlo standard errors (estimated from the samples)
    over 20000 networks, fixed seeds.
    """
    sw, sb, k, c_in = 1.5, 0.3, 3, 2
    m = CNN(input_shape=(6, 6, c_in), filters=(32,), kernel_sizes=(k,), sigma_w=sw, sigma_b=sb)
    x = np.asarray(jax.random.uniform(jax.random.key(7), (2, 6, 6, c_in), minval=-1.0), np.float64)
    n, chunks = 20000, 4
    f = []
    for key in jax.random.split(jax.random.key(8), chunks):
        params = m.init(key=key, n=n // chunks)
        f.append(np.asarray(m.apply_batched(params, jnp.asarray(x, jnp.float32)), np.float64))
    f = np.concatenate(f)

    # init scales: W ~ N(0, sw^2 / fan_in) with fan_in = k*k*C_in (conv) and 4*4*32 (readout);
    # the std of a sample std is ~ std / sqrt(2 size), allow 5 of those
    for layer, fan_in in zip(params, (k * k * c_in, 4 * 4 * 32)):
        for arr, std in ((np.asarray(layer["w"]), sw / math.sqrt(fan_in)), (np.asarray(layer["b"]), sb)):
            assert abs(arr.std() - std) < 5 * std / math.sqrt(2 * arr.size), (arr.shape, arr.std(), std)

    patches = np.stack([[x[:, i:i + k, j:j + k].reshape(2, -1) for j in range(4)] for i in range(4)]).reshape(16, 2, -1)
    gram = sb**2 + sw**2 * np.einsum("pad,pbd->pab", patches, patches) / (k * k * c_in)  # (positions, 2, 2)
    q1, q2, c12 = gram[:, 0, 0], gram[:, 1, 1], gram[:, 0, 1]
    t = np.arccos(np.clip(c12 / np.sqrt(q1 * q2), -1, 1))
    var_true = sb**2 + sw**2 * q1.mean() / 2
    cov_true = sb**2 + sw**2 * np.mean(np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t)))

    sq, cross = f[:, 0] ** 2, f[:, 0] * f[:, 1]
    assert abs(f[:, 0].mean()) < 4 * f[:, 0].std() / math.sqrt(n)
    assert abs(sq.mean() - var_true) < 4 * sq.std() / math.sqrt(n), (sq.mean(), var_true)
    assert abs(cross.mean() - cov_true) < 4 * cross.std() / math.sqrt(n), (cross.mean(), cov_true)
    print(f"var {sq.mean():.4f} vs {var_true:.4f}, cov {cross.mean():.4f} vs {cov_true:.4f}, "
          f"SE {sq.std() / math.sqrt(n):.4f} / {cross.std() / math.sqrt(n):.4f}")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(filters=(), kernel_sizes=()), "^filters: expected one or more"),
        (dict(filters=(2, 2), kernel_sizes=(3,)), r"^kernel_sizes: expected 2 entries"),
        (dict(filters=(2,), kernel_sizes=(0,)), r"^kernel_sizes\[0\]: expected a positive int"),
        (dict(filters=(2,), kernel_sizes=(3,), padding=("FULL",)), r"^padding\[0\]: expected"),
        (dict(filters=(2,), kernel_sizes=(3,), pooling="sum"), "^pooling: expected"),
        (dict(filters=(2,), kernel_sizes=(3,), activation="gelu"), "^activation: expected"),
        (dict(filters=(2,), kernel_sizes=(9,)), r"^kernel_sizes\[0\]: a 9x9 VALID conv does not fit the 8x8"),
        (dict(filters=4, kernel_sizes=(3,)), "^filters: expected one channel count per conv layer"),
        (dict(filters=(2,), kernel_sizes=((3, 3, 3),)), r"^kernel_sizes\[0\]: expected a positive int"),
    ],
)
def test_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        CNN(input_shape=(8, 8), **kw)
