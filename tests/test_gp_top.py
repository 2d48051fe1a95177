"""Top functions of a Gaussian predictive (bayes_sgd.gp.top_functions / greedy_mode) against
brute-force enumeration of all 2^n sign patterns with exact orthant probabilities."""
import itertools

import numpy as np
import pytest

from bayes_sgd.gp import (ep_posterior, ep_predictive, fcn_nngp_kernel, greedy_mode,
                          sample_sign_patterns, top_functions)
from bayes_sgd.tasks import boolean_inputs


def _wishart(n, seed, scale_mean):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n + 2))
    C = A @ A.T / (n + 2) + 0.05 * np.eye(n)
    return scale_mean * rng.standard_normal(n), C


def _nngp_predictive(n_E, seed):
    """EP predictive on E of the ReLU NNGP (2 hidden layers) on 5-bit inputs, S = 20 inputs
    labelled by x1 (a posterior that concentrates, as on images)."""
    X = boolean_inputs(5).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(32)
    s_idx, e_idx = idx[:20], idx[20:20 + n_E]
    K = fcn_nngp_kernel(X, depth=2, sigma_w=1.0, sigma_b=0.5)
    y = 2.0 * X[s_idx, 0] - 1.0
    st = ep_posterior(K[np.ix_(s_idx, s_idx)], y)
    return ep_predictive(K[np.ix_(s_idx, s_idx)], K[np.ix_(s_idx, e_idx)],
                         K[np.ix_(e_idx, e_idx)], st)


CASES = {  # name -> (mean, cov)
    "wishart_n6": _wishart(6, 1, 1.0),
    "wishart_n6_confident": _wishart(6, 2, 2.0),
    "nngp_ep_predictive_n6": _nngp_predictive(6, 3),
    "nngp_ep_predictive_n9": _nngp_predictive(9, 4),
}
SLOW = {"nngp_ep_predictive_n9"}  # 512 reference orthants (~30 s on a busy 2-core machine)


def _brute_force(mean, cov):
    """All 2^n patterns and their probabilities by scipy's QMC CDF directly (independent of the
    package): P(sign z = s) = P(-D z < 0), D = diag(2s - 1)."""
    from scipy.stats import multivariate_normal

    n = len(mean)
    pats = np.array(list(itertools.product((0, 1), repeat=n)), np.uint8)
    p = np.empty(len(pats))
    for i, b in enumerate(pats):
        d = 2.0 * b - 1.0
        p[i] = multivariate_normal.cdf(np.zeros(n), mean=-d * mean, cov=cov * np.outer(d, d),
                                       abseps=1e-6, releps=0, rng=np.random.default_rng(i))
    return pats, p


@pytest.fixture(scope="module", params=[pytest.param(c, marks=pytest.mark.slow) if c in SLOW
                                        else c for c in sorted(CASES)])
def case(request):
    mean, cov = CASES[request.param]
    pats, p = _brute_force(mean, cov)
    # the orthant probabilities of all 2^n patterns sum to 1 (QMC, abseps 1e-6 each)
    assert p.sum() == pytest.approx(1.0, abs=1e-3)
    return request.param, mean, cov, pats, p


N = 200_000


def test_sampled_frequencies_match_exact_orthant_probabilities(case):
    _, mean, cov, pats, p = case
    got, counts = sample_sign_patterns(mean, cov, rng=np.random.default_rng(7), n_samples=N,
                                       batch=30_000)
    assert counts.sum() == N and np.all(np.diff(counts) <= 0)
    table = {bytes(b): c for b, c in zip(got, counts)}
    freq = np.array([table.get(bytes(b), 0) for b in pats]) / N
    # binomial sd per pattern; 5 sd over <= 256 patterns: false-failure rate < 1.5e-4,
    # plus the QMC error of the reference (releps 1e-4 relative, 2e-5 absolute slack)
    sd = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(freq - p) <= 5 * sd + 2e-5)


@pytest.mark.parametrize("k", [1, 10])
def test_top_k_are_the_brute_force_top_k(case, k):
    _, mean, cov, pats, p = case
    top = top_functions(mean, cov, rng=np.random.default_rng(11), n_samples=N, k=k, score=3)
    exact = {bytes(b): q for b, q in zip(pats, p)}
    p_top = np.array([exact[bytes(b)] for b in top.bits])
    kth = np.sort(p)[::-1][min(k, len(p)) - 1]
    sd = np.sqrt(kth * (1 - kth) / N)
    # every pattern kept is in the top k up to sampling noise (two patterns within 5 sd of
    # each other may swap ranks) ...
    assert np.all(p_top >= kth - 10 * sd - 2e-5)
    # ... the scored ones get their exact orthant probability (None = exact for n <= 20) ...
    assert top.method == "exact"
    n_sc = min(3, len(p_top))
    assert np.isnan(top.log_p[n_sc:]).all()
    np.testing.assert_allclose(np.exp(top.log_p[:n_sc]), p_top[:n_sc], rtol=2e-3, atol=2e-6)
    # ... and the sampled mass of the k matches the brute-force mass of the same patterns
    assert top.mass_mc == pytest.approx(p_top.sum(), abs=5 * top.mass_mc_stderr + 1e-4)


def test_greedy_mode_is_a_local_maximum_and_agrees_with_sampling(case):
    name, mean, cov, pats, p = case
    bits, log_p, n_eval = greedy_mode(mean, cov)
    exact = {bytes(b): q for b, q in zip(pats, p)}
    here = exact[bytes(bits)]
    assert np.exp(log_p) == pytest.approx(here, rel=2e-3, abs=2e-6)
    for j in range(len(bits)):  # no single flip is more probable (beyond QMC noise)
        b = bits.copy()
        b[j] ^= 1
        assert exact[bytes(b)] <= here * (1 + 2e-3) + 2e-6
    assert n_eval >= 1 + len(bits)


def test_greedy_mode_independent_coordinates_is_the_global_mode():
    # diagonal covariance: P(s) = prod Phi(+-m_i / sd_i), maximised by s = (m > 0)
    rng = np.random.default_rng(5)
    m = rng.standard_normal(12)
    cov = np.diag(rng.uniform(0.5, 2.0, 12))
    bits, log_p, _ = greedy_mode(m, cov)
    from scipy.stats import norm
    assert np.array_equal(bits, (m > 0).astype(np.uint8))
    assert log_p == pytest.approx(norm.logcdf(np.abs(m) / np.sqrt(np.diag(cov))).sum(), abs=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples: expected a positive int"),
    (dict(n_samples=10, k=0), "k: expected a positive int"),
    (dict(n_samples=10, method="qmc"), "method: expected 'exact', 'ep' or None"),
])
def test_bad_input_is_named(kwargs, match):
    m, C = _wishart(3, 0, 1.0)
    with pytest.raises(ValueError, match=match):
        top_functions(m, C, rng=np.random.default_rng(0), **kwargs)
