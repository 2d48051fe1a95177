"""The memory-bounded forms of the NNGP kernel and of EP's posterior (issue 14, EP at |S| = 10^4)
against independent references: the kernel's row blocks against the unblocked cross-kernel
path and exact symmetry; K's symmetry check; parallel EP's rebuilt factor against numpy's.
(EP's posterior marginals against dense inverses: test_orthant.py.)"""
import numpy as np
import pytest

from bayes_sgd.gp import fcn_nngp_kernel, log_orthant_probability

# (n, d, depth, activation, sigma_b): MNIST-like (the EP-scaling setting), Boolean-like, depth 0
KERNEL_CASES = [(120, 784, 2, "relu", 0.0357), (64, 7, 2, "relu", 1.0), (40, 5, 3, "erf", 0.3),
                (30, 4, 0, "linear", 0.5)]


@pytest.mark.parametrize("n,d,depth,act,sb", KERNEL_CASES)
def test_blocked_kernel_is_blocksize_free_symmetric_and_matches_cross_path(n, d, depth, act, sb):
    X = np.random.default_rng(n + depth).random((n, d))
    kw = dict(depth=depth, sigma_w=1.3, sigma_b=sb, activation=act)
    one = fcn_nngp_kernel(X, **kw, block_entries=1 << 30)  # one block
    for be in (n * 7, 5):  # 7 rows per block; one row per block
        np.testing.assert_array_equal(fcn_nngp_kernel(X, **kw, block_entries=be), one)
    K = fcn_nngp_kernel(X, **kw)
    np.testing.assert_array_equal(K, one)
    if depth:
        np.testing.assert_array_equal(K, K.T)
    # the cross path (X2 given: unblocked, unsymmetrised) computes the same kernel
    cross = fcn_nngp_kernel(X, X.copy(), **kw)
    np.testing.assert_allclose(K, cross, rtol=1e-12, atol=1e-14)


def test_K_within_round_off_of_symmetric_is_symmetrised_and_beyond_refused():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 30))
    K = A @ A.T + np.eye(30)
    K = np.triu(K) + np.triu(K, 1).T  # exactly symmetric
    y = np.where(rng.random(30) < 0.5, -1.0, 1.0)
    K2 = K.copy()
    K2[3, 5] += 1e-12 * abs(K2[3, 5])
    assert log_orthant_probability(K2, y, "ep").log_p == \
        log_orthant_probability(0.5 * (K2 + K2.T), y, "ep").log_p
    K2[3, 5] += 1e-3
    with pytest.raises(ValueError, match="^K: expected a symmetric matrix"):
        log_orthant_probability(K2, y, "ep")
    K2[3, 5] = np.nan
    with pytest.raises(ValueError, match="^K: expected finite entries"):
        log_orthant_probability(K2, y, "ep")


def test_parallel_ep_rebuilds_the_factor_it_inverted_in_place():
    # Parallel EP (n > 256) inverts L in place and rebuilds it at the end: chol_B must be the
    # Cholesky factor of I + S^1/2 K S^1/2 for the returned sites (numpy's, independently),
    # and the predictive built on it must match dense conditioning of the EP posterior.
    from bayes_sgd.gp import ep_posterior, ep_predictive

    rng = np.random.default_rng(5)
    X = rng.standard_normal((320, 6))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.2, sigma_b=0.2, activation="relu")
    y = np.where(X[:, 0] - 0.5 * X[:, 1] > 0, 1.0, -1.0)
    st = ep_posterior(K[:300, :300], y[:300])
    assert st.variant == "parallel" and st.converged
    sw = np.sqrt(st.tau)
    B = np.eye(300) + sw[:, None] * K[:300, :300] * sw[None, :]
    np.testing.assert_allclose(st.chol_B, np.linalg.cholesky(B), rtol=1e-10, atol=1e-12)
    mean, cov = ep_predictive(K[:300, :300], K[:300, 300:], K[300:, 300:], st)
    Kinv_site = np.linalg.inv(K[:300, :300] + np.diag(1.0 / st.tau))  # (K + S^-1)^-1
    np.testing.assert_allclose(cov, K[300:, 300:] - K[300:, :300] @ Kinv_site @ K[:300, 300:],
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(mean, K[300:, :300] @ st.alpha, rtol=1e-12, atol=1e-14)
