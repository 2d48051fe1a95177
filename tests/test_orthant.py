"""Gaussian orthant probabilities: EP, scipy's QMC ("exact") and minimax tilting against
closed forms, 1-D quadrature references and each other."""
import mpmath
import numpy as np
import pytest
from scipy import optimize
from scipy.special import log_ndtr, logsumexp

from bayes_sgd.gp import (
    EXACT_MAX_DIM,
    ep_posterior,
    ep_predictive,
    fcn_nngp_kernel,
    log_orthant_probability,
    pac_bayes_bound,
    trunc_moments,
)


# ----------------------------------------------------------------------------- references


def equicorrelated(d, rho):
    return rho * np.ones((d, d)) + (1 - rho) * np.eye(d)


def one_factor_log_p(rho, m):
    """ln P(z > 0), z ~ N(m, equicorrelated(d, rho)), rho >= 0, by writing
    z_i = m_i + sqrt(rho) W + sqrt(1 - rho) e_i:  P = E_W prod_i Phi((m_i + sqrt(rho) W)/sqrt(1-rho)),
    a 1-D integral done by 200-point Gauss-Hermite centred on the integrand's peak (error < 1e-10
    relative for the cases here)."""
    m = np.asarray(m, dtype=float)
    logf = lambda W: np.sum(log_ndtr((m[None, :] + np.sqrt(rho) * W[:, None])  # noqa: E731
                                     / np.sqrt(1 - rho)), axis=1) - 0.5 * W**2
    grid = np.linspace(-40, 40, 80001)
    c = grid[np.argmax(logf(grid))]
    x, w = np.polynomial.hermite_e.hermegauss(200)
    return float(logsumexp(logf(x + c) + 0.5 * x**2 + np.log(w / np.sqrt(2 * np.pi))))


def random_cases(seed, n_cases):
    """Random low-dimensional problems: d in 2..8, Wishart correlations with few degrees of
    freedom (strong correlations), random scales, random signs, every other one with a mean."""
    rng = np.random.default_rng(seed)
    for c in range(n_cases):
        d = int(rng.integers(2, 9))
        A = rng.standard_normal((d, d + int(rng.integers(1, 4))))
        K = A @ A.T
        sd = np.sqrt(np.diag(K))
        scale = rng.uniform(0.5, 2.0, d)
        K = K / np.outer(sd, sd) * np.outer(scale, scale)
        s = rng.choice([-1, 1], d)
        m = None if c % 2 == 0 else rng.normal(0, 0.5, d) * scale
        yield K, s, m


def alternating_rbf(d=10, ell=0.2):
    """Smooth kernel, alternating signs: a very unlikely pattern (ln p ~ -34.5)."""
    x = np.linspace(0, 1, d)
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * ell**2)) + 1e-8 * np.eye(d)
    s = np.ones(d)
    s[::2] = -1
    return K, s


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("rho", [-0.95, -0.3, 0.0, 0.6, 0.99])
def test_two_dim_closed_form(rho):
    # P(z1 > 0, z2 > 0) = 1/4 + asin(rho)/(2 pi) (Sheppard)
    K = np.array([[1.0, rho], [rho, 1.0]]) * np.array([[2.0, 1.0], [1.0, 0.5]])
    ref = np.log(0.25 + np.arcsin(rho) / (2 * np.pi))
    ex = log_orthant_probability(K, [1, 1], "exact")
    assert ex.log_p == pytest.approx(ref, abs=1e-12)
    # flipping one sign flips rho; 0/1 and bool encodings mean the same signs
    ref_flip = np.log(0.25 - np.arcsin(rho) / (2 * np.pi))
    for signs in ([1, -1], [1, 0], [True, False]):
        assert log_orthant_probability(K, signs, "exact").log_p == pytest.approx(ref_flip, abs=1e-12)
    # tilting: unbiased with reported rel. s.e.; 5 s.e. (false-failure rate ~6e-7 per check)
    tl = log_orthant_probability(K, [1, 1], "minimax-tilting", n_samples=20_000, seed=1)
    assert abs(tl.log_p - ref) < 5 * tl.rel_stderr + 1e-12
    # EP in 2-D under-counts strongly correlated evidence: measured errors 0.004, 2e-4, 0, 0.004
    # at rho <= 0.6, but -0.030, -0.083, -0.109 at rho = 0.9, 0.99, 0.999; bounds 0.01 / 0.12
    assert log_orthant_probability(K, [1, 1], "ep").log_p == pytest.approx(ref, abs=0.01 if rho < 0.9 else 0.12)


def test_one_and_three_dim_closed_forms():
    # n = 1 with a mean: ln Phi(m / sd) for every method (EP and tilting are exact in 1-D)
    for method in ("exact", "ep", "minimax-tilting"):
        r = log_orthant_probability([[4.0]], [0], method, mean=[3.0])
        assert r.log_p == pytest.approx(log_ndtr(-1.5), rel=1e-12), method
    # n = 3, zero mean: 1/8 + (asin r12 + asin r13 + asin r23) / (4 pi)
    R = np.array([[1.0, 0.3, -0.5], [0.3, 1.0, 0.2], [-0.5, 0.2, 1.0]])
    ref = np.log(0.125 + (np.arcsin(0.3) + np.arcsin(-0.5) + np.arcsin(0.2)) / (4 * np.pi))
    assert log_orthant_probability(R, [1, 1, 1], "exact").log_p == pytest.approx(ref, abs=1e-12)
    tl = log_orthant_probability(R, [1, 1, 1], "minimax-tilting", n_samples=20_000, seed=2)
    assert abs(tl.log_p - ref) < 5 * tl.rel_stderr
    assert log_orthant_probability(R, [1, 1, 1], "ep").log_p == pytest.approx(ref, abs=0.03)


@pytest.mark.parametrize("d", [5, 10])
def test_equicorrelated_half_is_one_over_d_plus_one(d):
    # rho = 1/2: P(all z_i > 0) = 1/(d+1) (exchangeability of the max of d+1 iid normals)
    K = equicorrelated(d, 0.5)
    ref = -np.log(d + 1)
    # scipy QMC targets releps = 1e-4; allow 1e-3
    assert log_orthant_probability(K, np.ones(d), "exact").log_p == pytest.approx(ref, abs=1e-3)
    tl = log_orthant_probability(K, np.ones(d), "minimax-tilting", n_samples=20_000, seed=3)
    assert abs(tl.log_p - ref) < 5 * tl.rel_stderr
    assert tl.info["log_upper_bound"] >= ref  # psi* bounds ln P from above (Botev Thm 1)
    # EP under-estimates here by 0.007 (d = 5) and 0.012 (d = 10) nats; bound 0.03
    assert log_orthant_probability(K, np.ones(d), "ep").log_p == pytest.approx(ref, abs=0.03)


# ----------------------------------------------------------------------------- tiny probabilities


@pytest.mark.parametrize("rho, m", [(0.5, -3.0), (0.3, -2.5), (0.5, -7.0)])
def test_tilting_tiny_probabilities_vs_quadrature(rho, m):
    # ln p = -15.8, -17.9, -56.7 in d = 10; tilting within 5 of its own s.e. (z over 40 seeds:
    # mean -0.05, sd 1.0-1.1), EP within 0.05 nats (measured -0.003, -0.0007, -0.0006)
    d = 10
    K, mean = equicorrelated(d, rho), np.full(d, m)
    ref = one_factor_log_p(rho, mean)
    tl = log_orthant_probability(K, np.ones(d), "minimax-tilting", mean=mean, seed=4)
    assert abs(tl.log_p - ref) < 5 * tl.rel_stderr
    assert tl.rel_stderr < 0.01
    assert log_orthant_probability(K, np.ones(d), "ep", mean=mean).log_p == pytest.approx(ref, abs=0.05)


def test_ep_vs_tilting_for_very_unlikely_sign_pattern():
    # ln p ~ -34.5 (p ~ 1e-15), far outside what QMC resolves: compare EP to tilting, whose
    # s.e. is 0.35%. Bound 0.05 nats = EP's observed 0.004 + 5 tilting s.e. + margin.
    K, s = alternating_rbf()
    tl = log_orthant_probability(K, s, "minimax-tilting", n_samples=20_000, seed=5)
    assert tl.log_p < -30 and tl.rel_stderr < 0.01
    ep = log_orthant_probability(K, s, "ep")
    assert ep.converged
    assert ep.log_p == pytest.approx(tl.log_p, abs=0.05)


def test_tilting_is_unbiased_for_p():
    # E[p_hat] = p exactly for importance sampling (not E[ln p_hat]). 400 independent
    # estimates with 100 samples each; |z| = |mean - p| / (sd / sqrt(400)) < 4 has a false-
    # failure rate of ~6e-5 under the CLT. The case has ln p = -15.8 (quadrature reference).
    d, rho, m = 10, 0.5, -3.0
    K, mean = equicorrelated(d, rho), np.full(d, m)
    p = np.exp(one_factor_log_p(rho, mean))
    rng = np.random.default_rng(6)
    res = [log_orthant_probability(K, np.ones(d), "minimax-tilting", mean=mean, n_samples=100,
                                   rng=rng) for _ in range(400)]
    est = np.exp([r.log_p for r in res])
    z = (est.mean() - p) / (est.std(ddof=1) / np.sqrt(len(est)))
    assert abs(z) < 4
    # the reported relative s.e. is calibrated: the spread of the estimates agrees with it to
    # within 20% (the s.d. of a 400-sample s.d. is ~4%)
    ratio = (est.std(ddof=1) / p) / np.mean([r.rel_stderr for r in res])
    assert 0.8 < ratio < 1.2


# ----------------------------------------------------------------------------- EP accuracy


def test_ep_error_on_random_low_dim_cases():
    # 40 random problems (d = 2..8, ln p from -14 to -0.8). Measured ln p errors of EP against
    # scipy's QMC: mean |err| = 0.007, max |err| = 0.043 nats. Bounds at ~2x those, so a
    # regression in the site updates or in the ln Z_EP formula (O(0.1-1) nats) fails.
    errs = []
    for K, s, m in random_cases(0, 40):
        ex = log_orthant_probability(K, s, "exact", mean=m).log_p
        ep = log_orthant_probability(K, s, "ep", mean=m)
        assert ep.converged
        errs.append(ep.log_p - ex)
    errs = np.abs(errs)
    assert errs.mean() < 0.015
    assert errs.max() < 0.08


def test_sequential_and_parallel_ep_reach_the_same_fixed_point():
    # Same fixed-point equations, so ln Z_EP agrees to ~tol, with and without a prior mean;
    # both within EP's error of the QMC value (measured -0.015 and -0.010 nats; bound 0.05)
    K = fcn_nngp_kernel(np.random.default_rng(1).standard_normal((12, 5)), depth=2,
                        sigma_w=1.4, sigma_b=0.2, activation="relu")
    s = np.resize([1, -1, 1], 12)
    for mean in (None, 0.5 * np.sin(np.arange(12.0))):
        seq = log_orthant_probability(K, s, "ep", mean=mean, variant="sequential", tol=1e-9)
        par = log_orthant_probability(K, s, "ep", mean=mean, variant="parallel", tol=1e-9)
        assert seq.info["variant"] == "sequential" and par.info["variant"] == "parallel"
        assert seq.converged and par.converged
        assert par.log_p == pytest.approx(seq.log_p, abs=1e-8)
        exact = log_orthant_probability(K, s, "exact", mean=mean).log_p
        assert seq.log_p == pytest.approx(exact, abs=0.05)


def test_ep_reports_non_convergence():
    K = fcn_nngp_kernel(np.random.default_rng(2).standard_normal((300, 4)), depth=1,
                        sigma_w=1.4, sigma_b=0.2, activation="relu")
    s = np.resize([1, -1], 300)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = log_orthant_probability(K, s, "ep", max_iter=2)
    assert r.converged is False and r.n_iter == 2
    assert r.info["residual"] > 1e-4


def test_parallel_ep_at_auto_size_matches_sequential():
    # n = 300 > parallel_threshold: "auto" picks the parallel variant; the sequential
    # R&W Alg. 3.5 reaches the same fixed point (agreement 1e-6 at tol=1e-8 in both).
    rng = np.random.default_rng(10)
    X = rng.standard_normal((300, 8))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.4, sigma_b=0.1, activation="relu")
    s = np.where(X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.3, 1, -1)
    par = log_orthant_probability(K, s, "ep", tol=1e-8)
    seq = log_orthant_probability(K, s, "ep", tol=1e-8, variant="sequential")
    assert par.info["variant"] == "parallel" and par.converged and seq.converged
    assert par.log_p == pytest.approx(seq.log_p, abs=1e-6)


# (n, seed, mean / sd on the first k sites, k): sites whose sign the prior mean already
# implies carry (almost) no information: tau_i = 0 exactly at 40 sd, tiny but positive at 6 sd
# (then every site is informative and C is used whole).  EP's diag(Sigma) mixes (1 - b_i) /
# tau_i (informative sites) with K_ii - ||C S^1/2 K e_i||^2 (tau_i Sigma_ii < 1e-6).
POSTERIOR_CASES = [(40, 11, 40.0, 10), (50, 12, 6.0, 6)]


@pytest.mark.parametrize("variant", ["parallel", "sequential"])
@pytest.mark.parametrize("n, seed, shift, k", POSTERIOR_CASES)
def test_posterior_marginals_match_dense_inverse(n, seed, shift, k, variant):
    """The EP posterior's marginals against Sigma = (K^-1 + diag(tau))^-1 and mu = mean +
    Sigma nu from dense inverses, for the sites EP returned; both branches are exercised."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n + 20))
    K = A @ A.T / (n + 20) + 0.05 * np.eye(n)
    m = np.zeros(n)
    m[:k] = shift * np.sqrt(np.diag(K))[:k]
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    y[:k] = 1.0
    st = ep_posterior(K, y, mean=m, variant=variant)
    assert st.converged and st.jitter == 0
    Sigma = np.linalg.inv(np.linalg.inv(K) + np.diag(st.tau))
    np.testing.assert_allclose(st.var, np.diag(Sigma), rtol=1e-8)
    np.testing.assert_allclose(st.mu, m + Sigma @ st.nu, rtol=1e-7, atol=1e-10)
    assert np.sum(st.tau * st.var < 1e-6) >= k  # both branches were exercised
    assert (st.tau > 0).all() == (shift < 10)


def test_ill_conditioned_K_duplicate_rows_and_indefinite():
    # Duplicated inputs (singular K) with consistent signs: the event equals the de-duplicated
    # one, whose exact ln p is the reference. Cholesky of the singular K fails, so every
    # method adds (and reports) jitter. Tilting / QMC then agree with the reference to 0.02.
    # EP treats the copies as independent evidence and double counts: measured -0.29 nats
    # (-7.655 vs -7.365; EP on the de-duplicated K is off by only 0.005); bound 0.4, and the
    # sign of the error is asserted.
    rng = np.random.default_rng(8)
    X = rng.standard_normal((6, 3))
    K6 = fcn_nngp_kernel(X, depth=1, sigma_w=1.5, sigma_b=0.3, activation="relu")
    s6 = np.array([1, -1, 1, 1, -1, -1])
    idx = np.array([0, 1, 2, 3, 4, 5, 0, 2])
    K8, s8 = K6[np.ix_(idx, idx)], s6[idx]
    ref = log_orthant_probability(K6, s6, "exact").log_p
    # a slightly indefinite K (what round-off does to big kernels) needs more jitter
    K_bad = K8 - 1e-7 * np.eye(8)
    assert np.min(np.linalg.eigvalsh(K_bad)) < 0
    for K in (K8, K_bad):
        for method in ("ep", "minimax-tilting", "exact"):
            r = log_orthant_probability(K, s8, method, **({} if method == "ep" else {"seed": 0}))
            assert np.isfinite(r.log_p) and r.jitter > 0, method
            if method == "ep":
                assert -0.4 < r.log_p - ref < -0.1
            else:
                assert r.log_p == pytest.approx(ref, abs=0.02), method
        assert r.jitter > (1e-7 if K is K_bad else 0)


# ----------------------------------------------------------------------------- conditional mode


def test_ep_predictive_matches_dense_gaussian_conditioning():
    # q(f_S, f_E) ∝ N(f; 0, K) prod_i exp(-tau_i f_i^2/2 + nu_i f_i): its E-marginal from the
    # joint precision K^-1 + diag(tau, 0) and shift (nu, 0), computed densely.
    rng = np.random.default_rng(9)
    X = rng.standard_normal((9, 4))
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.3, sigma_b=0.2, activation="erf")
    S, E = np.arange(6), np.arange(6, 9)
    signs = np.array([1, 0, 1, 1, 0, 1])
    st = ep_posterior(K[np.ix_(S, S)], signs)
    mean_E, cov_E = ep_predictive(K[np.ix_(S, S)], K[np.ix_(S, E)], K[np.ix_(E, E)], st)
    prec = np.linalg.inv(K) + np.diag(np.r_[st.tau, np.zeros(3)])
    cov = np.linalg.inv(prec)
    mean = cov @ np.r_[st.nu, np.zeros(3)]
    np.testing.assert_allclose(mean_E, mean[E], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cov_E, cov[np.ix_(E, E)], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.mu, mean[S], rtol=1e-8, atol=1e-10)
    # conditional probability of a pattern on E: predictive orthant vs exact P(S u E) / P(S).
    # The Gaussian predictive is an approximation: measured -3.748 vs exact -3.807 (EP on
    # S u E and on S gives -3.801); bound 0.1 nats.
    sE = np.array([1, 1, 0])
    exact_cond = (log_orthant_probability(K, np.r_[signs, sE], "exact").log_p
                  - log_orthant_probability(K[np.ix_(S, S)], signs, "exact").log_p)
    pred = log_orthant_probability(cov_E, sE, "exact", mean=mean_E).log_p
    assert pred == pytest.approx(exact_cond, abs=0.1)
    assert pred != pytest.approx(log_orthant_probability(K[np.ix_(E, E)], sE, "exact").log_p,
                                 abs=0.1)  # conditioning matters for this case


# ----------------------------------------------------------------------------- numerics & API


def test_trunc_moments_against_mpmath():
    # lam = N(z)/Phi(z), 1 - r = 1 - lam (z + lam), at 50-digit precision; the tail branch must
    # keep full relative accuracy where the naive formula cancels (z = -1e3: naive error 6%)
    mpmath.mp.dps = 50
    zs = [8.0, 1.0, 0.0, -2.0, -3.5, -10.0, -40.0, -1e3, -1e5]
    log_phi, lam, r, omr = trunc_moments(np.array(zs))
    for i, z in enumerate(zs):
        zz = mpmath.mpf(z)
        L = mpmath.npdf(zz) / mpmath.ncdf(zz)
        R = L * (zz + L)
        assert float(mpmath.log(mpmath.ncdf(zz))) == pytest.approx(log_phi[i], rel=1e-12)
        assert float(L) == pytest.approx(lam[i], rel=1e-12)
        assert float(1 - R) == pytest.approx(omr[i], rel=1e-11)
        assert float(R) == pytest.approx(r[i], rel=1e-11)


def test_pac_bayes_bound_inverts_the_inequality():
    # eps solves (m - 1) * (-ln(1 - eps)) = ln(1/P) + ln(2m/delta); reference by root-finding
    for log_p, m, delta in [(-50.0, 100, 0.01), (-1234.5, 10_000, 0.05), (0.0, 2, 0.5)]:
        f = lambda e: (m - 1) * -np.log1p(-e) - (-log_p + np.log(2 * m / delta))  # noqa: E731
        ref = optimize.brentq(f, 1e-15, 1 - 1e-15, xtol=1e-15, rtol=1e-14)
        assert pac_bayes_bound(log_p, m, delta) == pytest.approx(ref, rel=1e-10)
    assert pac_bayes_bound(-50.0, 100) == pytest.approx(pac_bayes_bound(-50.0, 100, 0.01))
    with pytest.raises(ValueError, match="log_p_S"):
        pac_bayes_bound(0.5, 100)
    with pytest.raises(ValueError, match="m:"):
        pac_bayes_bound(-1.0, 1)


_K3 = equicorrelated(3, 0.2)
_BIG = EXACT_MAX_DIM + 1
BAD_ARGS = [  # (id, K, signs, method, options, message)
    ("sign 0", _K3, [1, 0, -1], "ep", {}, "signs"),
    ("signs too short", _K3, [1, 1], "ep", {}, "signs"),
    ("unknown method", _K3, [1, 1, 1], "genz", {}, "method"),
    ("option of another method", _K3, [1, 1, 1], "ep", {"n_samples": 10}, "unknown option"),
    ("K not symmetric", np.triu(_K3), [1, 1, 1], "ep", {}, "symmetric"),
    ("mean too short", _K3, [1, 1, 1], "ep", {"mean": [0.0, 1.0]}, "mean"),
    ("exact beyond its dimensions", equicorrelated(_BIG, 0.1), np.ones(_BIG), "exact", {}, "exact"),
]


@pytest.mark.parametrize("K, signs, method, options, match", [c[1:] for c in BAD_ARGS],
                         ids=[c[0] for c in BAD_ARGS])
def test_argument_validation(K, signs, method, options, match):
    with pytest.raises(ValueError, match=match):
        log_orthant_probability(K, signs, method, **options)


# ----------------------------------------------------------------------------- exact: QMC check


def test_exact_falls_back_to_tilting_when_qmc_misses(monkeypatch):
    # reference: the one-factor quadrature (error < 1e-10 relative).  Unpatched, scipy's QMC
    # is kept (measured |error| 2e-4 in ln p); with its result made 5x too small (what it
    # did on the tiny-p NNGP orthant below), the tilting check must catch it and the
    # 200,000-sample tilting estimate (measured rel. stderr 1.6e-3) replace it: tolerance 5
    # standard errors + 1e-3 (false-failure rate < 1e-6; seeded, so deterministic).
    import scipy.stats

    d, rho, m = 16, 0.5, -1.5
    K, mean = equicorrelated(d, rho), np.full(d, m)
    ref = one_factor_log_p(rho, mean)
    ok = log_orthant_probability(K, np.ones(d), "exact", mean=mean)
    assert ok.info["how"] == "scipy qmc" and ok.rel_stderr is None
    assert ok.log_p == pytest.approx(ref, abs=2e-3)
    real_cdf = scipy.stats.multivariate_normal.cdf
    monkeypatch.setattr(scipy.stats.multivariate_normal, "cdf",
                        lambda *a, **k: 0.2 * real_cdf(*a, **k))
    bad = log_orthant_probability(K, np.ones(d), "exact", mean=mean)
    assert bad.info["how"].startswith("minimax tilting") and 0 < bad.rel_stderr < 0.01
    assert abs(bad.log_p - ref) < 5 * bad.rel_stderr + 1e-3


def test_exact_on_tiny_nngp_orthant_agrees_with_ep():
    # The parity pattern on all 16 inputs of n = 4 under the ReLU NNGP (sigma_w 1, sigma_b
    # 0.5): p ~ 6e-15.  scipy's QMC alone returned log10 p = -15.00 / -15.57 / -15.03 (seeds
    # 0-2), 0.8-1.35 decades low; EP (an independent algorithm) gives -14.223 and minimax
    # tilting with 1e5 samples -14.225 +- 0.0006.  Tolerance 0.05 decades vs EP (EP's measured
    # error for p <= 1e-5, d <= 12, is at most 0.025 in ln p = 0.011 decades, see
    # benchmarks/bench_ep_accuracy.py; here 0.002 decades).
    from bayes_sgd.tasks import boolean_inputs

    K = fcn_nngp_kernel(boolean_inputs(4), depth=1, sigma_w=1.0, sigma_b=0.5, activation="relu")
    s = np.array([int(c) for c in "0110100110010110"])
    ep = log_orthant_probability(K, s, "ep").log_p / np.log(10)
    ex = log_orthant_probability(K, s, "exact", rng=np.random.default_rng(1))
    assert ex.log_p / np.log(10) == pytest.approx(ep, abs=0.05)
    assert ex.rel_stderr is not None and ex.rel_stderr < 0.01
