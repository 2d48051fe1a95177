"""Mixed-precision parallel EP (issue 14, EP at |S| = 10^4 in <= 90 s): the early sweeps factorise
B = I + S^1/2 K S^1/2 in float32, the sweeps that decide convergence in float64.

References: EP with every sweep in float64 (``precision="float64"``, the path before: the same
fixed point and stopping rule), dense float64 inverses for the returned posterior and for the
float32 posterior itself, and the fall-backs to float64 forced by a failing float32 Cholesky or
a residual stalled at float32's noise floor."""
import numpy as np
import pytest

from bayes_sgd.gp import _ep, ep_posterior, ep_predictive, fcn_nngp_kernel


def _nngp_case(n, seed, *, noise=0.3, mean_shift=0.0, k_shift=0):
    """NNGP of a ReLU FCN on Gaussian inputs, labels from a noisy linear rule; optionally a prior
    mean of ``mean_shift`` prior sds on the first ``k_shift`` sites (their sign then carries
    almost no information: the explicit-variance columns of ``_Posterior``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.2, sigma_b=0.2, activation="relu")
    y = np.where(X[:, 0] - 0.5 * X[:, 1] + noise * rng.standard_normal(n) > 0, 1.0, -1.0)
    m = np.zeros(n)
    m[:k_shift] = mean_shift * np.sqrt(np.diag(K))[:k_shift]
    y[:k_shift] = 1.0
    return K, y, m


# (id, n, seed, mean shift in sds, shifted sites, WARM_START_MIN): parallel EP at n > 256; the
# warm start recursing twice (1,100 -> 550 -> 275); sites with tau = 0 exactly (40 sd: the
# float32 posterior's C[:, A] branch) and tiny but positive (6 sd).
CASES = [("n300", 300, 10, 0.0, 0, None), ("n1100 warm", 1100, 14, 0.0, 0, 500),
         ("n400 tau=0 sites", 400, 11, 40.0, 40, None), ("n400 tiny tau", 400, 12, 6.0, 40, None)]


@pytest.mark.parametrize("n, seed, shift, k, warm_min", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_mixed_precision_ep_reaches_the_float64_fixed_point(monkeypatch, n, seed, shift, k,
                                                            warm_min):
    # Both runs pass the same float64 convergence test (tol = 1e-4), so they may differ by
    # O(tol) in the marginals (bound 1e-3 = 10 tol, as for the warm start) and far less in ln Z
    # (bound 1e-6 relative; measured <= 3.4e-11 here, marginals within 1.1e-5, and 2.3e-13 on
    # MNIST at n = 2,500, 2.3e-11 at 10,000).
    if warm_min is not None:
        monkeypatch.setattr(_ep, "WARM_START_MIN", warm_min)
    K, y, m = _nngp_case(n, seed, mean_shift=shift, k_shift=k)
    ref = ep_posterior(K, y, mean=m, precision="float64")
    st = ep_posterior(K, y, mean=m)  # precision="mixed" is the default
    assert ref.variant == st.variant == "parallel" and ref.converged and st.converged
    precs = [h[5] for h in st.history]
    assert precs[0] == "float32" and precs[-1] == "float64"  # both kinds of sweep ran
    assert all(h[5] == "float64" for h in ref.history)
    assert st.log_Z == pytest.approx(ref.log_Z, rel=1e-6)
    assert np.max(np.abs(st.mu - ref.mu) / np.sqrt(ref.var)) < 1e-3
    assert np.max(np.abs(np.log(st.var / ref.var))) < 1e-3
    # float32's error (~1e-5 in residual units) is far below the damping rule's decisions:
    # the same sweeps (measured in every case here and on MNIST at 2,500 and 10,000)
    assert st.n_iter == ref.n_iter
    # the returned state is a float64 posterior of its own sites: dense inverses (R&W eq. 3.53)
    assert st.inv_chol_B.dtype == np.float64
    Sigma = np.linalg.inv(np.linalg.inv(K) + np.diag(st.tau))
    np.testing.assert_allclose(st.var, np.diag(Sigma), rtol=1e-7)
    np.testing.assert_allclose(st.mu, m + Sigma @ st.nu, rtol=1e-6,
                               atol=1e-9 * np.abs(st.mu).max())
    if k and shift > 10:
        assert np.all(st.tau[:k] == 0)  # the tau = 0 branch was exercised


def test_predictive_from_mixed_precision_ep_matches_dense_conditioning():
    # ep_predictive on the mixed state against dense Gaussian conditioning of its EP posterior
    # (as test_gp_memory does for float64 EP) and against the float64 state's predictive
    # (the same fixed point: bounds 1e-3 of the predictive sd, as for the marginals above).
    K, y, _ = _nngp_case(340, 5)
    S, E = np.arange(300), np.arange(300, 340)
    st = ep_posterior(K[np.ix_(S, S)], y[S])
    ref = ep_posterior(K[np.ix_(S, S)], y[S], precision="float64")
    assert any(h[5] == "float32" for h in st.history)
    mean, cov = ep_predictive(K[np.ix_(S, S)], K[np.ix_(S, E)], K[np.ix_(E, E)], st)
    Kinv_site = np.linalg.inv(K[np.ix_(S, S)] + np.diag(1.0 / st.tau))  # (K + S^-1)^-1
    np.testing.assert_allclose(cov, K[np.ix_(E, E)] - K[np.ix_(E, S)] @ Kinv_site @ K[np.ix_(S, E)],
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(mean, K[np.ix_(E, S)] @ st.alpha, rtol=1e-12, atol=1e-14)
    mean_r, cov_r = ep_predictive(K[np.ix_(S, S)], K[np.ix_(S, E)], K[np.ix_(E, E)], ref)
    sd = np.sqrt(np.diag(cov_r))
    assert np.max(np.abs(mean - mean_r) / sd) < 1e-3
    assert np.max(np.abs(np.diag(cov) / np.diag(cov_r) - 1)) < 1e-3


def test_float32_posterior_against_dense_float64_inverses():
    # One float32 posterior at converged sites (the hardest state: large tau, max 1.5e3), against
    # Sigma = (K^-1 + diag tau)^-1 and mu = Sigma nu. Measured at n = 600: mean within 1.3e-7
    # posterior sds (refined once in float64; 1.0e-3 without the refinement), variances within
    # 2.2e-3 relative (sites with 1 - b_i just above the explicit form's 1e-4; 2.4e-4 with it
    # at 1e-3), ln|B| within 1.6e-6. Bounds: 1e-6 sd (the unrefined mean fails it), 1e-2 and
    # 1e-5 relative. (Deterministic: fixed seed, no sampling.)
    K, y, _ = _nngp_case(600, 3)
    st = ep_posterior(K, y, precision="float64")
    post = _ep._Posterior(K, st.tau, st.nu, keep_L=False, single=True)
    assert post.single and post.C.dtype == np.float32
    Sigma = np.linalg.inv(np.linalg.inv(K) + np.diag(st.tau))
    sd = np.sqrt(np.diag(Sigma))
    assert np.max(np.abs(post.mu - Sigma @ st.nu) / sd) < 1e-6
    assert np.max(np.abs(post.var / np.diag(Sigma) - 1)) < 1e-2
    # ln|B| / 2 from the float32 factor: slogdet in float64 as the reference
    sw = np.sqrt(st.tau)
    _, logdet = np.linalg.slogdet(np.eye(600) + sw[:, None] * K * sw[None, :])
    assert post.logdet_half == pytest.approx(logdet / 2, rel=1e-5)


def test_failing_float32_cholesky_falls_back_to_the_float64_path(monkeypatch):
    # spotrf reporting failure on the first sweep: every sweep is then float64, so the result is
    # bit for bit precision="float64"'s (no jitter added: a float32 failure is not K's).
    K, y, m = _nngp_case(300, 10)
    ref = ep_posterior(K, y, precision="float64")
    calls = []

    def failing_spotrf(a, **kw):
        calls.append(a.shape)
        return a, 1

    monkeypatch.setattr(_ep.lapack, "spotrf", failing_spotrf)
    st = ep_posterior(K, y)
    assert len(calls) == 1 and st.jitter == 0 == ref.jitter
    assert all(h[5] == "float64" for h in st.history)
    assert st.log_Z == ref.log_Z and st.n_iter == ref.n_iter
    np.testing.assert_array_equal(st.mu, ref.mu)
    np.testing.assert_array_equal(st.inv_chol_B, ref.inv_chol_B)


def test_residual_stalled_at_float32_noise_floor_falls_back_to_float64(monkeypatch):
    # With the switch at 0 and tol = 1e-9, float32 sweeps alone would stall at their noise
    # floor (measured: ~3e-6, the last six 3.2e-6 to 4.1e-6) and hit max_iter; the stall rule
    # (no new minimum for two sweeps) hands over to float64 (25 float32 + 11 float64 sweeps;
    # 25 all float64), which converges to the float64 run's fixed point (measured 2.7e-14
    # relative).
    monkeypatch.setattr(_ep, "SINGLE_ABOVE", 0.0)
    K, y, _ = _nngp_case(300, 10)
    ref = ep_posterior(K, y, tol=1e-9, precision="float64")
    st = ep_posterior(K, y, tol=1e-9)
    precs = [h[5] for h in st.history]
    n32 = precs.count("float32")
    assert st.converged and ref.converged and 0 < n32 < len(precs)
    assert precs == ["float32"] * n32 + ["float64"] * (len(precs) - n32)
    assert min(h[2] for h in st.history[:n32]) > 1e-9  # float32 never reached tol here
    assert st.log_Z == pytest.approx(ref.log_Z, rel=1e-9)


def test_max_iter_on_a_float32_sweep_returns_a_float64_state():
    # Not converged after 2 sweeps, both float32 (residual ~1): the state returned is the
    # float64 posterior of the last sites (ln Z within float32's error of the float64 run's:
    # measured 2.7e-8 relative, bound 1e-4).
    K, y, _ = _nngp_case(300, 10)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        st = ep_posterior(K, y, max_iter=2)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        ref = ep_posterior(K, y, max_iter=2, precision="float64")
    assert [h[5] for h in st.history] == ["float32"] * 2 and st.n_iter == 2
    assert st.inv_chol_B.dtype == np.float64
    sw = np.sqrt(st.tau)
    L = np.linalg.cholesky(np.eye(300) + sw[:, None] * K * sw[None, :])
    np.testing.assert_allclose(st.chol_B, L, rtol=1e-9, atol=1e-11)
    assert st.log_Z == pytest.approx(ref.log_Z, rel=1e-4)


@pytest.mark.parametrize("precision", ["float32", "single", None])
def test_precision_argument_is_checked(precision):
    K, y, _ = _nngp_case(20, 1)
    with pytest.raises(ValueError, match="^precision: expected 'mixed' or 'float64'"):
        ep_posterior(K, y, precision=precision)
