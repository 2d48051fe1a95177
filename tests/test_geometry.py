"""Distance concentration (``bayes_sgd.geometry``) against the chi distribution and brute force.

Monte-Carlo tolerance: the relative spread from N independent pairs has a relative standard
error of about 1 / sqrt(2 (N - 1)) (nearly normal distances); with N = 4000 that is 1.1 %, and
the tests allow 5 standard errors (false-failure rate < 1e-6 per case).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammaln

from bayes_sgd.geometry import chi_relative_spread, distance_summary, pair_distances, relative_spread


@pytest.mark.parametrize("d", [1, 3, 10, 100, 1000])
def test_relative_spread_of_gaussian_distances_is_the_chi_closed_form(d):
    rng = np.random.default_rng(d)
    N, s = 4000, 0.7
    x, y = rng.normal(0, s, (N, d)), rng.normal(0, s, (N, d))
    measured = relative_spread(np.linalg.norm(x - y, axis=1))
    mu = np.sqrt(2) * np.exp(gammaln((d + 1) / 2) - gammaln(d / 2))  # mean of chi_d
    closed = np.sqrt(d - mu ** 2) / mu
    assert chi_relative_spread(d) == pytest.approx(closed, rel=1e-6)
    assert measured == pytest.approx(closed, rel=5 / np.sqrt(2 * (N - 1)))


def test_relative_spread_falls_like_one_over_sqrt_2d():
    for d in (10 ** 4, 10 ** 6):
        assert chi_relative_spread(d) == pytest.approx(1 / np.sqrt(2 * d), rel=1e-3)


def test_pair_distances_and_summary_against_brute_force():
    rng = np.random.default_rng(0)
    X, X0 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    f = ["a", "b", "a", "c", "b", "a"]
    d, same = pair_distances(X, f)
    brute = [(np.linalg.norm(X[i] - X[j]), f[i] == f[j]) for i in range(6) for j in range(i + 1, 6)]
    np.testing.assert_allclose(d, [b[0] for b in brute])
    np.testing.assert_array_equal(same, [b[1] for b in brute])
    s = distance_summary(X, X0, f)
    assert s["same_function"]["n"] == 4 and s["different_function"]["n"] == 11
    assert s["same_function"]["mean"] == pytest.approx(np.mean([b[0] for b in brute if b[1]]))
    assert s["from_init"]["mean"] == pytest.approx(np.linalg.norm(X - X0, axis=1).mean())


def test_bad_dimension_is_named():
    with pytest.raises(ValueError, match="d: expected a dimension"):
        chi_relative_spread(0)
