"""The memory-bounded forms of the NNGP kernel and of EP's posterior (issue 14, EP at |S| = 10^4)
against independent references: the kernel's row blocks against the unblocked cross-kernel
path and exact symmetry; K's symmetry check; parallel EP's inverse factor (and the factor
computed from it) against numpy's.
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


def test_parallel_ep_keeps_the_inverse_factor_of_its_last_sweep():
    # Parallel EP (n > 256) inverts L in place and keeps L^-1: inv_chol_B must be the inverse
    # of the Cholesky factor of I + S^1/2 K S^1/2 for the returned sites (numpy's,
    # independently), chol_B (computed from it on access) that factor, and the predictive
    # built on the inverse must match dense conditioning of the EP posterior.
    from bayes_sgd.gp import ep_posterior, ep_predictive

    rng = np.random.default_rng(5)
    X = rng.standard_normal((320, 6))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.2, sigma_b=0.2, activation="relu")
    y = np.where(X[:, 0] - 0.5 * X[:, 1] > 0, 1.0, -1.0)
    st = ep_posterior(K[:300, :300], y[:300])
    assert st.variant == "parallel" and st.converged
    sw = np.sqrt(st.tau)
    B = np.eye(300) + sw[:, None] * K[:300, :300] * sw[None, :]
    assert st._chol_B is None  # not rebuilt by EP (issue 14: one Cholesky less)
    L = np.linalg.cholesky(B)
    np.testing.assert_allclose(np.tril(st.inv_chol_B), np.linalg.inv(L), rtol=1e-10,
                               atol=1e-12)
    mean, cov = ep_predictive(K[:300, :300], K[:300, 300:], K[300:, 300:], st)
    Kinv_site = np.linalg.inv(K[:300, :300] + np.diag(1.0 / st.tau))  # (K + S^-1)^-1
    np.testing.assert_allclose(cov, K[300:, 300:] - K[300:, :300] @ Kinv_site @ K[:300, 300:],
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(mean, K[300:, :300] @ st.alpha, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.chol_B, L, rtol=1e-10, atol=1e-12)
    # the predictive from L^-1 is the one from a solve with L (the path before) to round-off
    import dataclasses

    mean_L, cov_L = ep_predictive(K[:300, :300], K[:300, 300:], K[300:, 300:],
                                  dataclasses.replace(st, inv_chol_B=None, _chol_B=L))
    np.testing.assert_allclose(cov, cov_L, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(mean, mean_L)


def _warm_start_case(n=1100):
    rng = np.random.default_rng(14)
    X = rng.standard_normal((n, 6))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.2, sigma_b=0.2, activation="relu")
    y = np.where(X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.standard_normal(n) > 0, 1.0, -1.0)
    return K, y


def test_warm_started_parallel_ep_reaches_the_cold_fixed_point(monkeypatch):
    # n = 1,100 with WARM_START_MIN = 500: EP on 550 points (itself warm-started from 275)
    # starts the full EP. Both runs pass the same convergence test (tilted vs posterior
    # marginals within tol = 1e-4), so they may differ by O(tol) in the marginals (bound 1e-3,
    # 10 tol) and far less in ln Z (bound 1e-6 relative; measured ~1e-10 on MNIST).
    from bayes_sgd.gp import _ep, ep_posterior

    K, y = _warm_start_case()
    cold = ep_posterior(K, y, warm_start=False)
    monkeypatch.setattr(_ep, "WARM_START_MIN", 500)
    warm = ep_posterior(K, y)
    assert cold.variant == warm.variant == "parallel" and cold.converged and warm.converged
    assert warm.log_Z == pytest.approx(cold.log_Z, rel=1e-6)
    assert np.max(np.abs(warm.mu - cold.mu) / np.sqrt(cold.var)) < 1e-3
    assert np.max(np.abs(np.log(warm.var / cold.var))) < 1e-3
    assert warm.n_iter < cold.n_iter  # full-size sweeps: the point of the warm start
    # the factor (from the kept inverse) belongs to the returned sites
    sw = np.sqrt(warm.tau)
    B = np.eye(len(y)) + sw[:, None] * K * sw[None, :]
    np.testing.assert_allclose(warm.chol_B, np.linalg.cholesky(B), rtol=1e-9, atol=1e-11)


def test_warm_start_marginals_equal_the_posterior_at_those_sites():
    # warm_start_sites gets the full posterior's marginals without factorising it (the half's
    # EP posterior on A, its predictive on T): against a dense inverse of K^-1 + diag(tau)
    # (R&W eq. 3.53) at the sites it returns, half of them zero.
    from bayes_sgd.gp import _ep

    K, y = _warm_start_case(700)
    tau, nu, mu, var = _ep.warm_start_sites(K, y, np.zeros(len(y)), min_size=600)
    assert np.all(tau[1::2] == 0) and np.all(tau[::2] > 0)
    Sigma = np.linalg.inv(np.linalg.inv(K) + np.diag(tau))
    np.testing.assert_allclose(var, np.diag(Sigma), rtol=1e-7)
    np.testing.assert_allclose(mu, Sigma @ nu, rtol=1e-6, atol=1e-9 * np.abs(mu).max())
    assert _ep.warm_start_sites(K, y, np.zeros(len(y)), min_size=701) is None


def test_cold_parallel_ep_starts_from_the_exact_prior_marginals():
    # the unfactorised start at zero sites must be what the factorisation gives (to the bit)
    from bayes_sgd.gp._ep import _Posterior

    K, _ = _warm_start_case(300)
    z = np.zeros(300)
    post = _Posterior(K, z, z, keep_L=False)
    np.testing.assert_array_equal(post.var, np.diag(K))
    np.testing.assert_array_equal(post.mu, z)
