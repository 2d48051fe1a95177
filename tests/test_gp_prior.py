"""GP prior P(f) on the whole truth table vs random-init sampling (``prior_vs_sampling`` and
the runner's ``summary["gp"]["prior_vs_sampling"]``), against an independent computation.

Reference: the analytic NNGP kernel on all 2^n inputs (``fcn_nngp_kernel``), P(f) by drawing
10^7 GP functions g ~ N(0, K) and counting sign patterns (no orthant code; standard error
< 0.0044 decades for the p >= 1e-3 selected), frequencies read back from functions.parquet,
correlations from ``scipy.stats``.  The runner
uses EP (as at n = 7, where nothing else is affordable), so its numbers differ from the
reference by EP's error: measured on these 16-dim orthants (p >= 1e-3, against scipy's QMC)
up to 0.070 decades, 0.04 on average (EP low), Pearson 0.99334 vs 0.99331 (reference),
Spearman 0.976 vs 0.967 (functions related by an input symmetry have equal P: EP keeps the
ties, the reference's noise breaks them).  Tolerances: log10 P 0.1 decades (EP's 0.07 plus
5 standard errors of the reference), Pearson 0.005, Spearman 0.03; the correlations of the
rows written to functions.parquet must match the summary to 1e-12.

The physics check, Pearson of GP vs frequency > 0.95: with 200,000 networks and functions seen
>= 200 times the Poisson error of log10 frequency is < 0.031 decades; measured 0.993.  The run
is seeded (seed 0), so every check is deterministic.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_sgd.config import config_from_dict
from bayes_sgd.gp import fcn_nngp_kernel
from bayes_sgd.samplers import PRIOR_SAMPLER, prior_vs_sampling
from bayes_sgd.tasks import boolean_inputs

SIGMA_W, SIGMA_B = 1.0, 0.5
N_BITS, MIN_COUNT, N_SAMPLES = 4, 200, 200_000


def _ref_log10_p(K, functions, n_draws=10_000_000, seed=7) -> np.ndarray:
    """log10 P(sign g = f) for each f by sampling g ~ N(0, K) directly (no orthant code):
    with 1e7 draws a p >= 1e-3 has a standard error < 0.0044 decades."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(K + 1e-12 * np.eye(len(K)))
    weights = 1 << np.arange(len(K) - 1, -1, -1)  # bit string order: first input = high bit
    counts = np.zeros(2 ** len(K), np.int64)
    for _ in range(n_draws // 1_000_000):
        g = rng.standard_normal((1_000_000, len(K))) @ L.T
        counts += np.bincount((g > 0) @ weights, minlength=len(counts))
    keys = [int(f, 2) for f in functions]
    return np.log10(counts[keys] / n_draws)


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    from bayes_sgd.experiment import run_experiment

    out = tmp_path_factory.mktemp("gp_prior")
    cfg = config_from_dict({
        "name": "tiny_gp_prior", "seed": 0,
        "task": {"kind": "boolean", "n": N_BITS, "target": "majority",
                 "train_mask": "1101010011010100"},
        "model": {"arch": "fcn", "widths": [8], "activation": "relu", "sigma_w": SIGMA_W,
                  "sigma_b": SIGMA_B},
        "samplers": {"rejection": {"n_samples": N_SAMPLES, "record_prior": True},
                     "sgd": {"enabled": False},
                     "gp": {"enabled": True, "method": "ep", "max_functions": 5,
                            "prior_min_count": MIN_COUNT}},
        "analysis": {"min_counts": [2], "plot": False}})
    run_experiment(cfg, out, show_progress=False)
    summary = json.loads((out / "summary.json").read_text())
    df = pd.read_parquet(out / "functions.parquet")
    return summary, df


def test_runner_prior_summary_matches_independent_computation(prior_run):
    summary, df = prior_run
    pv = summary["gp"]["prior_vs_sampling"]
    prior = df[df["sampler"] == "prior"]
    total = prior["count"].astype(float).sum()
    assert total == N_SAMPLES == pv["n_samples"] and pv["n_distinct_sampled"] == len(prior)
    sel = prior[prior["count"].astype(float) >= MIN_COUNT]
    K = fcn_nngp_kernel(boolean_inputs(N_BITS), depth=1, sigma_w=SIGMA_W, sigma_b=SIGMA_B,
                        activation="relu")
    x = np.log10(sel["count"].astype(float).to_numpy() / total)
    ref = _ref_log10_p(K, list(sel["function"]))
    assert pv["method"] == "ep" and pv["kernel"] == "analytic" and pv["min_count"] == MIN_COUNT
    assert pv["all"]["n_functions"] == len(sel) >= 10
    assert pv["all"]["pearson"] == pytest.approx(stats.pearsonr(x, ref)[0], abs=5e-3)
    assert pv["all"]["spearman"] == pytest.approx(stats.spearmanr(x, ref)[0], abs=0.03)
    const = sel["ones"].isin([0, 2**N_BITS]).to_numpy()
    assert const.sum() == 2  # both constant functions are frequent in this prior
    wo = pv["without_constant_functions"]
    assert wo["n_functions"] == len(sel) - 2
    assert wo["pearson"] == pytest.approx(stats.pearsonr(x[~const], ref[~const])[0], abs=5e-3)
    assert wo["spearman"] == pytest.approx(stats.spearmanr(x[~const], ref[~const])[0], abs=0.03)
    assert pv["mean_log10_gp_minus_sampled"] == pytest.approx(np.mean(ref - x), abs=0.1)
    # the GP prior is the infinite-width limit of this prior: it tracks the frequencies
    assert pv["all"]["pearson"] > 0.95
    # gp_prior rows: one per selected function, log10 P as computed here
    rows = df[df["sampler"] == PRIOR_SAMPLER].set_index("function")
    assert set(rows.index) == set(sel["function"])
    got = rows.loc[list(sel["function"]), "log10_p"].to_numpy(float)
    np.testing.assert_allclose(got, ref, atol=0.1)
    assert pv["all"]["spearman"] == pytest.approx(stats.spearmanr(x, got)[0], abs=1e-12)
    assert pv["all"]["pearson"] == pytest.approx(stats.pearsonr(x, got)[0], abs=1e-12)
    np.testing.assert_array_equal(rows.loc[list(sel["function"]), "ones"].to_numpy(),
                                  sel["ones"].to_numpy())
    # numeric columns stay numeric in the parquet (a scalar NaN column used to come back object)
    for col in ("p", "log10_p", "log10_p_err", "lz", "test_error"):
        assert df[col].dtype == np.float64, col
    # the posterior step still ran on E and the agreement ignores the prior rows
    assert summary["gp"]["n_functions"] == 5
    assert "gp_prior" not in json.dumps(summary["agreement"])


def test_min_count_selection_constants_and_exact_fallback():
    # 5 functions on 32 inputs (beyond the exact method's 20 dims) with given counts
    rng = np.random.default_rng(0)
    A = rng.standard_normal((32, 40))
    K = A @ A.T / 40 + 0.5
    fns = ["0" * 32, "1" * 32, "01" * 16, "0011" * 8, "1" + "0" * 31, "10" * 16]
    counts = [500, 400, 30, 9, 12, 100]
    prior = pd.DataFrame({"function": fns, "count": counts,
                          "ones": [f.count("1") for f in fns]})
    scored, summ = prior_vs_sampling(K, prior, min_count=10, method="exact")
    assert summ["method"] == "ep" and "32" in summ["method_note"]
    assert list(scored["function"]) == [fns[i] for i in (0, 1, 5, 2, 4)]  # count >= 10, by count
    x = np.log10(np.array([500, 400, 100, 30, 12]) / sum(counts))
    np.testing.assert_allclose(scored["log10_p_sampled"], x, rtol=1e-12)
    y = scored["log10_p_gp"].to_numpy()
    assert summ["all"]["pearson"] == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-12)
    assert summ["without_constant_functions"]["n_functions"] == 3
    assert summ["without_constant_functions"]["spearman"] == pytest.approx(
        stats.spearmanr(x[2:], y[2:])[0], rel=1e-12)
    assert summ["count>=100"]["n_functions"] == 3 and summ["n_distinct_sampled"] == 6
    # the all-zero function of a centred GP with equal marginals: P = P(all negative) equals
    # P(all positive) (the Gaussian is symmetric); EP gives the same for both
    assert y[0] == pytest.approx(y[1], abs=1e-9)
    with pytest.raises(ValueError, match="^min_count: expected an integer >= 1, got 0"):
        prior_vs_sampling(K, prior, min_count=0)
