"""NNGP kernels: analytic for the FCN, Monte-Carlo for any model with ``init``/``apply_batched``.

Convention (the one ``bayes_sgd.models.FCN`` samples from; Lee et al. 2018, Matthews et al. 2018)::

    K^0(x, x')     = sigma_b^2 + sigma_w^2 x.x' / d_in
    K^{l+1}(x, x') = sigma_b^2 + sigma_w^2 E[phi(u) phi(v)],   (u, v) ~ N(0, [[K^l_xx, K^l_xx'],
                                                                             [K^l_xx', K^l_x'x']])

and a network with ``depth`` hidden layers has output kernel ``K^depth``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["fcn_nngp_kernel", "fcn_nngp_kernel_for", "mc_nngp_kernel", "mc_kernel_stderr"]

_ANALYTIC = ("relu", "erf", "linear")


def _as_features(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"{name}: expected an array of shape (N, d_in, ...), got shape {X.shape}")
    return X.reshape(X.shape[0], -1)


def _relu_expectation(k11, k22, k12):
    # Arc-cosine kernel of degree 1 (Cho & Saul 2009):
    # E[relu(u)relu(v)] = sqrt(k11 k22)/(2 pi) * (sin t + (pi - t) cos t),  cos t = k12/sqrt(k11 k22)
    # A zero variance (e.g. the all-zero input with sigma_b = 0) means u = 0 or v = 0 exactly, so
    # relu(u) relu(v) = 0: the limit norm -> 0 of the formula (|bracket| <= pi), not 0/0.
    norm = np.sqrt(k11 * k22)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_t = np.clip(np.where(norm > 0, k12 / np.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    t = np.arccos(cos_t)
    return norm / (2 * np.pi) * (np.sqrt(1.0 - cos_t**2) + (np.pi - t) * cos_t)


def _erf_expectation(k11, k22, k12):
    # Williams (1997): E[erf(u)erf(v)] = 2/pi * arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))
    arg = 2.0 * k12 / np.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22))
    return 2.0 / np.pi * np.arcsin(np.clip(arg, -1.0, 1.0))


def _expectation(activation: str, k11, k22, k12):
    if activation == "relu":
        return _relu_expectation(k11, k22, k12)
    if activation == "erf":
        return _erf_expectation(k11, k22, k12)
    if activation == "linear":
        return np.asarray(k12, dtype=np.float64).copy()
    raise ValueError(f"activation: expected one of {list(_ANALYTIC)}, got {activation!r}")


def fcn_nngp_kernel(X1, X2=None, *, depth: int, sigma_w: float, sigma_b: float,
                    activation: str = "relu", block_entries: int | None = None) -> np.ndarray:
    """Output-layer NNGP kernel ``K^depth(X1, X2)`` of an FCN with ``depth`` hidden layers.

    ``K^0 = sigma_b^2 + sigma_w^2 x.x'/d_in`` and ``K^{l+1} = sigma_b^2 + sigma_w^2 E[phi(u)phi(v)]``
    with ``(u, v) ~ N(0, K^l)``: relu by the arc-cosine recursion (Cho & Saul 2009), erf by
    Williams' arcsin formula, linear trivially (tanh has no closed form: use ``mc_nngp_kernel``).
    Inputs of shape (N, ...) are flattened to (N, d_in). Returns float64 of shape (N1, N2)
    (``X2=None`` means ``X2 = X1``; the result is then exactly symmetric, computed in place by
    row blocks of at most ``block_entries`` entries, which X2 leaves unused (default 2^22, 32 MB of work memory besides
    the result; the values do not depend on it).
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth: expected a non-negative int (number of hidden layers), got {depth!r}")
    if activation not in _ANALYTIC:
        raise ValueError(f"activation: expected one of {list(_ANALYTIC)} (no closed form for "
                         f"others, e.g. tanh: use mc_nngp_kernel), got {activation!r}")
    if block_entries is not None and (isinstance(block_entries, bool) or not isinstance(
            block_entries, (int, np.integer)) or block_entries < 1):
        raise ValueError(f"block_entries: expected a positive int, got {block_entries!r}")
    sw2, sb2 = float(sigma_w) ** 2, float(sigma_b) ** 2
    A = _as_features(X1, "X1")
    sym = X2 is None
    B = A if sym else _as_features(X2, "X2")
    if B.shape[1] != A.shape[1]:
        raise ValueError(f"X2: expected {A.shape[1]} features to match X1, got {B.shape[1]}")
    d = A.shape[1]
    k11 = sb2 + sw2 * np.einsum("ij,ij->i", A, A) / d
    k22 = k11 if sym else sb2 + sw2 * np.einsum("ij,ij->i", B, B) / d
    if sym:
        return _fcn_nngp_kernel_sym(A, k11, depth, sw2, sb2, activation,
                                    block_entries or _BLOCK_ENTRIES)
    k12 = sb2 + sw2 * (A @ B.T) / d
    for _ in range(depth):
        k12 = sb2 + sw2 * _expectation(activation, k11[:, None], k22[None, :], k12)
        new11 = sb2 + sw2 * _expectation(activation, k11, k11, k11)
        k22 = new11 if sym else sb2 + sw2 * _expectation(activation, k22, k22, k22)
        k11 = new11
        if sym:
            # keep the diagonal on its exact value (the cross formula at cos t = 1 rounds)
            k12 = 0.5 * (k12 + k12.T)
            np.fill_diagonal(k12, k11)
    return k12


_BLOCK_ENTRIES = 1 << 22  # entries per row block of the in-place recursion (32 MB)


def _fcn_nngp_kernel_sym(A, k11, depth, sw2, sb2, activation, block_entries=_BLOCK_ENTRIES):
    """``fcn_nngp_kernel(A)`` in one n x n array, the layers applied in place by row blocks.

    Bit for bit the unblocked recursion: the layer maps are elementwise, so row blocks give the
    same numbers; ``0.5 (k12 + k12^T)`` is done once, in place, after the first layer (the
    gemm ``A A^T`` need not be exactly symmetric); from then on every layer map is a function
    symmetric in (i, j) (``sqrt(k11_i k11_j)`` etc. commute exactly), so the later
    symmetrisations would be no-ops (``0.5 (x + x) = x``) and are skipped. Memory: the result
    plus a few blocks (the unblocked form held ~7 n x n temporaries: 5.6 GB at n = 10^4).
    """
    n, d = A.shape
    K = A @ A.T
    K *= sw2  # sb2 + sw2 * (A @ A.T) / d, rounded in the same order
    K /= d
    K += sb2
    step = max(1, block_entries // n)
    for layer in range(depth):
        new11 = sb2 + sw2 * _expectation(activation, k11, k11, k11)
        for i in range(0, n, step):
            rows = slice(i, i + step)
            K[rows] = sb2 + sw2 * _expectation(activation, k11[rows, None], k11[None, :], K[rows])
        k11 = new11
        if layer == 0:
            for i in range(0, n, step):
                rows = slice(i, i + step)
                avg = 0.5 * (K[rows, i:] + K[i:, rows].T)  # the upper part of these rows
                K[rows, i:] = avg
                K[i:, rows] = avg.T
        np.fill_diagonal(K, k11)
    return K


def fcn_nngp_kernel_for(model, X1, X2=None) -> np.ndarray:
    """``fcn_nngp_kernel`` with depth, sigmas and activation read off an ``FCN`` ``model``."""
    for attr in ("widths", "sigma_w", "sigma_b", "activation", "in_dim"):
        if not hasattr(model, attr):
            raise ValueError(f"model: expected an FCN (with .{attr}), got {type(model).__name__}")
    d = _as_features(X1, "X1").shape[1]
    if d != model.in_dim:
        raise ValueError(f"X1: expected {model.in_dim} features (model.in_dim), got {d}")
    return fcn_nngp_kernel(X1, X2, depth=len(model.widths), sigma_w=model.sigma_w,
                           sigma_b=model.sigma_b, activation=model.activation)


def _default_chunk(model, input_shape: tuple[int, ...]) -> int:
    """Networks per batch keeping parameters under 2^24 floats and the widest activation under
    2^26 floats. The activation of one network on one input is estimated as the largest
    parameter fan-out (last axis of a leaf: width or channels) times the input's spatial size
    (``prod(shape[1:-1])``, 1 for flat inputs): exact for the FCN, right order for 'same'-padded
    convolutions."""
    import jax

    shapes = jax.tree_util.tree_leaves(
        jax.eval_shape(lambda k: model.init(key=k, n=1), jax.random.key(0)))
    n_params = sum(math.prod(a.shape) for a in shapes)
    widest = max(a.shape[-1] for a in shapes)
    per_net = input_shape[0] * widest * math.prod(input_shape[1:-1])
    return max(1, min(4096, (1 << 24) // max(n_params, 1), (1 << 26) // max(per_net, 1)))


def mc_nngp_kernel(model, X, *, key, n_samples: int, chunk: int | None = None) -> np.ndarray:
    """Monte-Carlo NNGP kernel of any model with ``init(*, key, n)`` / ``apply_batched``.

    Draws ``n_samples`` networks theta_s from the model's own prior and returns
    ``K_hat = (1/n) sum_s f_s(X) f_s(X)^T`` (float64, shape (N, N)). The outputs have mean
    zero under the prior (zero-mean output weights and bias), so this is unbiased for
    ``E[f(x) f(x')]``, the finite-width kernel; it differs from the infinite-width NNGP by
    O(1/width) for depth >= 2 and not at all for one hidden layer. For Gaussian outputs
    ``Var(K_hat_xx') = (K_xx K_x'x' + K_xx'^2) / n`` (Isserlis), see ``mc_kernel_stderr``.

    Networks are drawn ``chunk`` at a time (key ``fold_in(key, i)`` for chunk ``i``, so the
    result depends on ``chunk``). Memory is O(chunk * (params + N * widest activation) + N^2);
    the default ``chunk`` keeps the first term under ~2^26 floats (see ``_default_chunk``).
    """
    import jax
    import jax.numpy as jnp

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive int, got {n_samples!r}")
    if chunk is None:
        chunk = _default_chunk(model, tuple(int(d) for d in np.shape(X)))
    elif isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk: expected a positive int, got {chunk!r}")
    chunk = int(min(chunk, n_samples))
    x = jnp.asarray(X)

    @jax.jit
    def draw(k):
        return model.apply_batched(model.init(key=k, n=chunk), x)

    K = None
    for i, start in enumerate(range(0, int(n_samples), chunk)):
        F = np.asarray(draw(jax.random.fold_in(key, i)), dtype=np.float64)[: int(n_samples) - start]
        K = F.T @ F if K is None else K + F.T @ F
    return K / n_samples


def mc_kernel_stderr(K, n_samples: int) -> np.ndarray:
    """Standard error of ``mc_nngp_kernel`` entries for Gaussian outputs:
    ``sqrt((K_xx K_x'x' + K_xx'^2) / n_samples)``."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K: expected a square matrix, got shape {K.shape}")
    d = np.diag(K)
    return np.sqrt((np.outer(d, d) + K**2) / n_samples)
