"""sigma_b = 0 on a Boolean task: the all-zero input has zero variance at every layer.

Its NNGP kernel row is exactly 0 (the arc-cosine recursion's limit, not 0/0), every network
outputs exactly 0 there, and the package's threshold (label = f(x) > 0) makes its label 0: the
GP gives P(f) = 0 to functions labelling it 1 and the orthant probability of the other inputs
otherwise.  References: the Monte-Carlo kernel of the same networks, and label frequencies of
networks drawn from the prior."""
from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from bayes_sgd.gp import fcn_nngp_kernel, log_orthant_probability, mc_kernel_stderr, mc_nngp_kernel
from bayes_sgd.models import FCN
from bayes_sgd.tasks import boolean_inputs


@pytest.mark.parametrize("depth", [1, 2])
def test_relu_kernel_with_sigma_b_zero_is_finite_and_matches_monte_carlo(depth):
    X = boolean_inputs(3)  # row 0 is the all-zero input
    K = fcn_nngp_kernel(X, depth=depth, sigma_w=1.3, sigma_b=0.0)
    assert np.all(np.isfinite(K))
    assert np.all(K[0] == 0) and np.all(K[:, 0] == 0)  # exactly: u = 0 at every layer
    # the other rows are the same recursion as with a tiny sigma_b (continuity of the limit)
    K_eps = fcn_nngp_kernel(X, depth=depth, sigma_w=1.3, sigma_b=1e-6)
    np.testing.assert_allclose(K[1:, 1:], K_eps[1:, 1:], rtol=1e-5, atol=1e-9)
    # Monte-Carlo over the package's own networks.  One hidden layer: the finite-width kernel
    # equals the NNGP at any width, so entries agree within 5 standard errors (Isserlis;
    # per-entry false-failure rate ~6e-7).  Two layers: width 256 leaves an O(1/width) bias
    # (~0.4 %), allowed as 3 % of the entry on top.
    model = FCN(in_dim=3, widths=(64,) if depth == 1 else (256, 256), sigma_w=1.3, sigma_b=0.0)
    n = 4000
    K_mc = mc_nngp_kernel(model, X, key=jax.random.key(5), n_samples=n)
    assert np.all(K_mc[0] == 0) and np.all(K_mc[:, 0] == 0)
    se = mc_kernel_stderr(K, n)
    tol = 5 * se + (0.0 if depth == 1 else 0.03 * np.abs(K))
    assert np.all(np.abs(K_mc - K) <= tol + 1e-12)


def test_zero_variance_orthant_follows_the_threshold():
    K = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.3], [0.0, 0.3, 1.0]])
    for method in ("ep", "exact", "minimax-tilting"):
        kw = {"rng": np.random.default_rng(0)} if method != "ep" else {}
        # z_0 = 0 is negative (label 0): P = P(z_1 > 0, z_2 < 0) = 1/4 - asin(0.3)/(2 pi)
        r = log_orthant_probability(K, [0, 1, 0], method, **kw)
        assert np.exp(r.log_p) == pytest.approx(0.25 - np.arcsin(0.3) / (2 * np.pi), rel=2e-2)
        assert r.info["n_zero_variance"] == 1
        assert log_orthant_probability(K, [1, 1, 0], method, **kw).log_p == -np.inf
    # a constant coordinate with a mean keeps the mean's sign
    assert log_orthant_probability(K, [1, 1, 1], "exact", mean=[0.5, 0, 0]).log_p == \
        pytest.approx(np.log(0.25 + np.arcsin(0.3) / (2 * np.pi)), rel=1e-6)
    assert log_orthant_probability(np.zeros((2, 2)), [0, 0], "ep").log_p == 0.0
    with pytest.raises(ValueError, match="positive semi-definite"):
        log_orthant_probability(np.array([[0.0, 0.5], [0.5, 1.0]]), [0, 1], "ep")


def test_gp_prior_over_functions_matches_network_label_frequencies():
    """n = 2, sigma_b = 0, one wide hidden layer: P(f) on all 4 inputs from the GP ('exact')
    against the frequencies of labels f(x) > 0 over 20,000 prior networks.  Functions labelling
    the zero input 1 have GP probability 0 and are never drawn; the others agree within 5
    binomial standard errors plus 0.01 for the finite width (1024)."""
    X = boolean_inputs(2)
    K = fcn_nngp_kernel(X, depth=1, sigma_w=1.0, sigma_b=0.0)
    model = FCN(in_dim=2, widths=(1024,), sigma_w=1.0, sigma_b=0.0)
    n = 20_000
    params = model.init(key=jax.random.key(11), n=n)
    labels = np.asarray(model.apply_batched(params, X) > 0).reshape(n, 4)
    assert not labels[:, 0].any()  # the output at the zero input is exactly 0 -> label 0
    freq = {f: np.mean((labels == np.array(f)).all(1)) for f in itertools.product((0, 1), repeat=4)}
    gp = {f: np.exp(log_orthant_probability(K, f, "exact", rng=np.random.default_rng(0)).log_p)
          for f in freq}
    assert sum(gp.values()) == pytest.approx(1.0, abs=1e-3)
    for f in freq:
        if f[0] == 1:
            assert gp[f] == 0.0 and freq[f] == 0.0
        else:
            se = np.sqrt(gp[f] * (1 - gp[f]) / n)
            assert abs(freq[f] - gp[f]) <= 5 * se + 0.01, (f, freq[f], gp[f])
