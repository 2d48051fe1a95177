"""NNGP kernels: closed forms, direct numerical integration, and Monte-Carlo over wide FCNs."""
import jax
import numpy as np
import pytest
from scipy import integrate, special

from bayes_sgd.gp import fcn_nngp_kernel, fcn_nngp_kernel_for, mc_kernel_stderr, mc_nngp_kernel
from bayes_sgd.models import FCN

SW, SB = 1.5, 0.4


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4))
    X[1] = -0.8 * X[0]  # an anti-correlated pair
    X[2] = X[3] + 0.01  # a nearly duplicate pair
    return X


def _gauss_expectation(f, k11, k22, k12, *, positive_quadrant=False):
    """E[f(u, v)], (u, v) ~ N(0, [[k11, k12], [k12, k22]]), by adaptive quadrature on
    u = sqrt(k11) a, v = sqrt(k22) (rho a + sqrt(1 - rho^2) b), a, b iid N(0, 1).
    ``positive_quadrant``: f vanishes unless u, v > 0 (relu); integrate only there, so the
    integrand is smooth."""
    rho = k12 / np.sqrt(k11 * k22)
    c = np.sqrt(max(1 - rho**2, 0.0))
    a_lo = 0.0 if positive_quadrant else -12.0
    if c < 1e-12:  # u, v perfectly correlated: 1-D
        g = lambda a: f(np.sqrt(k11) * a, np.sqrt(k22) * a) * np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)  # noqa: E731
        return integrate.quad(g, a_lo, 12, epsabs=1e-12, epsrel=1e-11)[0]

    def integrand(b, a):
        u = np.sqrt(k11) * a
        v = np.sqrt(k22) * (rho * a + c * b)
        return f(u, v) * np.exp(-0.5 * (a * a + b * b)) / (2 * np.pi)

    b_lo = (lambda a: max(-12.0, -rho * a / c)) if positive_quadrant else -12.0
    return integrate.dblquad(integrand, a_lo, 12, b_lo, 12, epsabs=1e-11, epsrel=1e-10)[0]


def test_depth0_is_the_linear_kernel(X):
    # K^0 = sigma_b^2 + sigma_w^2 x.x'/d_in, entry by entry, also for a cross-kernel
    K = fcn_nngp_kernel(X, depth=0, sigma_w=SW, sigma_b=SB, activation="relu")
    ref = np.array([[SB**2 + SW**2 * (a @ b) / 4 for b in X] for a in X])
    np.testing.assert_allclose(K, ref, rtol=1e-13, atol=1e-13)
    Kc = fcn_nngp_kernel(X[:2], X[2:], depth=0, sigma_w=SW, sigma_b=SB, activation="erf")
    np.testing.assert_allclose(Kc, ref[:2, 2:], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_one_layer_matches_direct_integration(X, activation):
    # K^1 = sb^2 + sw^2 E[phi(u) phi(v)] with (u, v) ~ N(0, K^0), integrated by scipy quadrature.
    # Quadrature error is ~1e-10, far below the 1e-7 tolerance; a wrong closed form is O(1e-2).
    phi = (lambda t: np.maximum(t, 0.0)) if activation == "relu" else special.erf
    K0 = fcn_nngp_kernel(X, depth=0, sigma_w=SW, sigma_b=SB, activation=activation)
    K1 = fcn_nngp_kernel(X, depth=1, sigma_w=SW, sigma_b=SB, activation=activation)
    for i, j in [(0, 1), (2, 3), (0, 4), (5, 5)]:
        e = _gauss_expectation(lambda u, v: phi(u) * phi(v), K0[i, i], K0[j, j], K0[i, j],
                               positive_quadrant=activation == "relu")
        assert K1[i, j] == pytest.approx(SB**2 + SW**2 * e, rel=1e-7, abs=1e-9)


def test_cross_kernel_matches_blocks_of_joint_kernel(X):
    # K(X1, X2) must be the off-diagonal block of K([X1; X2]) (no recursion shortcut may mix
    # the two diagonals) at depth 3.
    kw = dict(depth=3, sigma_w=SW, sigma_b=SB, activation="relu")
    K = fcn_nngp_kernel(X, **kw)
    np.testing.assert_allclose(fcn_nngp_kernel(X[:2], X[2:], **kw), K[:2, 2:], rtol=1e-12)
    np.testing.assert_array_equal(K, K.T)


# Monte-Carlo over random networks drawn by FCN.init itself. Tolerance per entry:
#   5 * SE * sqrt(1 + 2 / n_last) + bias,
# with SE = sqrt((K_xx K_x'x' + K_xx'^2) / n) the Gaussian-output standard error; the factor
# covers the excess kurtosis of f at finite last width n_last (f is a Gaussian scale mixture
# whose conditional kernel fluctuates by O(1/n_last)). bias: 0 for one hidden layer (the
# output-layer expectation is exact at any width); O(K/n_1) for two, bounded here by
# 3 |K| / n_1. With 21 correlated entries at 5 SE the false-failure rate is < 1e-5.
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("widths, n_samples", [((512,), 10_000), ((1024, 32), 4_000)])
def test_mc_kernel_matches_analytic(X, activation, widths, n_samples):
    model = FCN(in_dim=4, widths=widths, activation=activation, sigma_w=SW, sigma_b=SB)
    K = fcn_nngp_kernel_for(model, X)
    K_mc = mc_nngp_kernel(model, X, key=jax.random.key(7), n_samples=n_samples)
    n_last = widths[-1]
    bias = 0.0 if len(widths) == 1 else 3.0 * np.abs(K) / widths[0]
    tol = 5.0 * mc_kernel_stderr(K, n_samples) * np.sqrt(1 + 2 / n_last) + bias
    assert np.all(np.abs(K_mc - K) <= tol), np.max(np.abs(K_mc - K) / tol)
    # and the analytic kernel differs from the depth-(L-1) one by far more than tol, so the
    # comparison resolves the recursion depth
    K_wrong = fcn_nngp_kernel(X, depth=len(widths) - 1, sigma_w=SW, sigma_b=SB,
                              activation=activation)
    assert np.any(np.abs(K_mc - K_wrong) > tol)


def test_mc_kernel_single_network_is_outer_product(X):
    # n_samples=1: K_hat = f f^T for the network drawn with fold_in(key, 0)
    model = FCN(in_dim=4, widths=(8,), activation="relu", sigma_w=SW, sigma_b=SB)
    key = jax.random.key(3)
    K = mc_nngp_kernel(model, X, key=key, n_samples=1)
    f = np.asarray(model.apply_batched(model.init(key=jax.random.fold_in(key, 0), n=1),
                                       X), dtype=np.float64)[0]
    np.testing.assert_allclose(K, np.outer(f, f), rtol=1e-6)


def test_mc_kernel_stderr_formula():
    K = np.array([[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(mc_kernel_stderr(K, 100),
                               np.sqrt(np.array([[8.0, 2.25], [2.25, 2.0]]) / 100))


_KW = dict(depth=1, sigma_w=1.0, sigma_b=0.0)
_KEY = jax.random.key(0)
# (id, call on the module's X (6 x 4), message the ValueError must start with)
BAD_ARGS = [
    ("X 1-d", lambda X: fcn_nngp_kernel(X[0], **_KW), r"X1: expected an array of shape \(N, d_in"),
    ("X2 1-d", lambda X: fcn_nngp_kernel(X, X[0], **_KW), r"X2: expected an array of shape"),
    ("X2 features", lambda X: fcn_nngp_kernel(X, X[:, :3], **_KW),
     "X2: expected 4 features to match X1, got 3"),
    ("tanh", lambda X: fcn_nngp_kernel(X, **(_KW | {"activation": "tanh"})),
     r"activation: expected one of \['relu', 'erf', 'linear'\] \(no closed form"),
    ("depth -1", lambda X: fcn_nngp_kernel(X, **(_KW | {"depth": -1})),
     "depth: expected a non-negative int"),
    ("depth bool", lambda X: fcn_nngp_kernel(X, **(_KW | {"depth": True})),
     "depth: expected a non-negative int"),
    ("depth float", lambda X: fcn_nngp_kernel(X, **(_KW | {"depth": 1.0})),
     "depth: expected a non-negative int"),
    ("block_entries 0", lambda X: fcn_nngp_kernel(X, **_KW, block_entries=0),
     "block_entries: expected a positive int, got 0"),
    ("model not an FCN", lambda X: fcn_nngp_kernel_for(object(), X), "model: expected an FCN"),
    ("model in_dim", lambda X: fcn_nngp_kernel_for(FCN(in_dim=5), X),
     r"X1: expected 5 features \(model.in_dim\), got 4"),
    ("mc n_samples 0", lambda X: mc_nngp_kernel(FCN(in_dim=4), X, key=_KEY, n_samples=0),
     "n_samples: expected a positive int, got 0"),
    ("mc n_samples bool", lambda X: mc_nngp_kernel(FCN(in_dim=4), X, key=_KEY, n_samples=True),
     "n_samples: expected a positive int"),
    ("mc chunk 0", lambda X: mc_nngp_kernel(FCN(in_dim=4), X, key=_KEY, n_samples=8, chunk=0),
     "chunk: expected a positive int, got 0"),
    ("stderr K not square", lambda X: mc_kernel_stderr(np.ones((2, 3)), 10),
     r"K: expected a square matrix, got shape \(2, 3\)"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_argument_is_named(X, call, message):
    with pytest.raises(ValueError, match="^" + message):
        call(X)
