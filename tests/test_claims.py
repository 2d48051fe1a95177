"""The numbers of the claims' figures (``bayes_sgd.claims``) against independent references:
brute force over the Boolean task, scipy's entropy, and the PAC-Bayes bound's formula
(Valle-Perez et al. 2019: -ln(1 - eps) = [ln 1/P(S) + ln(2m/delta)] / (m - 1), delta = 0.01)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_sgd.claims import concentration, corrupted_target, run_metrics
from bayes_sgd.config import config_from_dict
from bayes_sgd.tasks import boolean_task


@pytest.mark.parametrize("fraction,k", [(0.0, 0), (0.1, 2), (0.3, 5), (0.5, 8), (1.0, 16)])
def test_corrupted_target_flips_k_labels_of_S_only(fraction, k):
    t = corrupted_target("and4", n=7, train_size=16, train_seed=0, fraction=fraction)
    clean = boolean_task(7, "and4", train_size=16, seed=0)
    bad = boolean_task(7, t, train_size=16, seed=0)
    np.testing.assert_array_equal(bad.train_index, clean.train_index)  # S does not move
    assert int((bad.y_train != clean.y_train).sum()) == k == round(fraction * 16)
    np.testing.assert_array_equal(bad.y_test, clean.y_test)


def test_corrupted_target_bad_fraction():
    with pytest.raises(ValueError, match="fraction: expected a value in"):
        corrupted_target("and4", n=7, train_size=16, train_seed=0, fraction=1.5)


@pytest.mark.parametrize("p", [[1.0], [3, 1], [0.5, 0.25, 0.25, 0.0], list(range(1, 30))])
def test_concentration_is_scipy_entropy_and_max(p):
    c = concentration(p)
    q = np.asarray(p, float)
    assert c["entropy_bits"] == pytest.approx(stats.entropy(q, base=2), abs=1e-4)
    assert c["top_mass"] == pytest.approx(q.max() / q.sum(), abs=1e-4)
    assert c["n_functions"] == int((q > 0).sum())


def test_run_metrics_bound_and_weighted_errors_against_their_formulas(tmp_path):
    from bayes_sgd.experiment import run_experiment

    cfg = config_from_dict({
        "name": "claims", "seed": 1,
        "task": {"kind": "boolean", "n": 5, "target": "and3", "train_size": 10},
        "model": {"arch": "fcn", "widths": [8, 8]},
        "samplers": {"rejection": {"n_samples": 20000},
                     "sgd": {"n_runs": 40, "lr": 0.1, "batch_size": 4, "max_epochs": 300},
                     "gp": {"enabled": True, "mode": "conditional", "max_functions": 50}},
        "analysis": {"plot": False},
    })
    run_experiment(cfg, tmp_path, show_progress=False)
    m = run_metrics(tmp_path)
    ln_p = m["gp_log10_P_S"] * math.log(10)
    mm, delta = 10, 0.01
    eps = 1 - math.exp(-(-ln_p + math.log(2 * mm / delta)) / (mm - 1))
    assert m["pac_bayes_bound"] == pytest.approx(eps, abs=1e-4)  # rounded to 4 places
    df = pd.read_parquet(tmp_path / "functions.parquet")
    task = boolean_task(5, "and3", train_size=10, seed=0)
    for s, w in (("sgd", "count"), ("gp", "log10_p")):
        sub = df[df["sampler"] == s]
        bits = np.array([[c == "1" for c in f] for f in sub["function"]])
        err = (bits != task.y_test.astype(bool)).mean(1)  # test error from scratch
        wt = sub[w].astype(float).to_numpy()
        wt = 10 ** wt if s == "gp" else wt
        assert m[f"{s}_test_error"] == pytest.approx((err * wt).sum() / wt.sum(), abs=1e-4)
    c = sub  # gp rows: entropy over the scored functions, renormalised
    q = 10 ** c["log10_p"].astype(float).to_numpy()
    assert m["gp"]["entropy_bits"] == pytest.approx(stats.entropy(q, base=2), abs=1e-4)
    assert m["rejection_log10_P_S"] == pytest.approx(
        math.log10(pd.read_json(tmp_path / "summary.json", typ="series")["rejection"]["n_accepted"] / 20000),
        abs=1e-4)


# ---- the width sweep's NNGP limit (claims.nngp_limit) and its sample-size concentration ----

def _tiny_gp_run(tmp_path, n_runs=40):
    """n = 4, |S| = 10 -> |E| = 6: small enough for brute force over all 2^6 functions on E."""
    from bayes_sgd.experiment import run_experiment

    cfg = config_from_dict({
        "name": "nngp", "seed": 2,
        "task": {"kind": "boolean", "n": 4, "target": "0001000100010111", "train_size": 10},
        "model": {"arch": "fcn", "widths": [8, 8]},
        "samplers": {"rejection": {"enabled": False},
                     "sgd": {"n_runs": n_runs, "lr": 0.1, "batch_size": 5, "max_epochs": 300},
                     "gp": {"enabled": True, "mode": "conditional", "max_functions": 64}},
        "analysis": {"plot": False},
    })
    run_experiment(cfg, tmp_path, show_progress=False)
    return cfg


def _brute_force_posterior(cfg):
    """P_B(f_E | S) of all 2^|E| sign patterns of the EP predictive, by scipy's multivariate
    normal CDF (Genz; not the package's orthant code), and each pattern's test error."""
    import itertools

    from bayes_sgd.gp import ep_posterior, ep_predictive
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import GPProblem, gp_kernel
    from bayes_sgd.tasks import build_task

    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    prob = GPProblem.from_task(task, lambda X: gp_kernel(cfg, model, X)[0])
    assert prob.n_E == task.n_test  # Boolean task: E and S disjoint, so E is all free
    S, E = slice(0, prob.n_S), slice(prob.n_S, None)
    st = ep_posterior(prob.K[S, S], prob.y_S)
    mean, cov = ep_predictive(prob.K[S, S], prob.K[S, E], prob.K[E, E], st)
    pats = np.array(list(itertools.product([0, 1], repeat=task.n_test)), np.uint8)
    p = np.empty(len(pats))
    for i, b in enumerate(pats):
        d = 2.0 * b[prob.e_slot - prob.n_S] - 1.0  # sign per free E input
        p[i] = stats.multivariate_normal(mean=-d * mean, cov=cov * np.outer(d, d), allow_singular=True,
                                         abseps=1e-6, releps=1e-6).cdf(np.zeros(len(d)))
    err = (pats != task.y_test.astype(np.uint8)[None, :]).mean(1)
    return p, err, float(st.log_Z)


def test_nngp_limit_against_brute_force_and_the_runner(tmp_path):
    from bayes_sgd.claims import nngp_limit, posterior_test_error

    cfg = _tiny_gp_run(tmp_path)
    n_draws = 100_000
    lim = nngp_limit(tmp_path, n_draws=n_draws)
    p, err, log_z = _brute_force_posterior(cfg)
    assert p.sum() == pytest.approx(1.0, abs=2e-3)  # the 64 patterns exhaust the posterior
    # ln P(S) and the bound: the runner's (summary.json gp) and the formula
    gp = pd.read_json(tmp_path / "summary.json", typ="series")["gp"]
    assert lim["log10_P_S"] == pytest.approx(gp["log10_P_S"], abs=1e-6)
    eps = 1 - math.exp(-(-gp["log10_P_S"] * math.log(10) + math.log(2 * 10 / 0.01)) / 9)
    assert lim["pac_bayes_bound"] == pytest.approx(eps, abs=1e-6)
    # whole-posterior test error from the marginals vs the sum over all 64 functions (the
    # CDF's abseps 1e-6 per pattern bounds the difference by 64e-6 < 1e-4)
    assert lim["test_error"] == pytest.approx((p * err).sum() / p.sum(), abs=1e-4)
    assert posterior_test_error(tmp_path) == pytest.approx((p * err).sum() / p.sum(), abs=1e-4)
    # from draws: 5 standard errors of a mean of n_draws bounded [0, 1] errors (sd <= 0.5):
    # false-failure rate < 1e-6
    assert lim["test_error_mc"] == pytest.approx(lim["test_error"], abs=5 * 0.5 / math.sqrt(n_draws))
    # top-function mass of the draws vs the largest exact probability: 5 binomial s.e.
    top = p.max() / p.sum()
    assert lim["top_mass_posterior"] == pytest.approx(top, abs=5 * math.sqrt(top * (1 - top) / n_draws))
    # n_runs draws: mean plug-in entropy vs the same estimator on multinomial draws from the
    # exact probabilities (numpy, independent of the Gaussian sampling); 5 s.e. of the
    # difference of two means over n_batches batches each
    s = lim["sampled"]
    assert s["sample_size"] == 40 and s["n_batches"] == n_draws // 40
    rng = np.random.default_rng(7)
    q = p / p.sum()
    c = rng.multinomial(40, q, size=s["n_batches"]) / 40
    h_ref = np.array([stats.entropy(r[r > 0], base=2) for r in c])
    m_ref = c.max(1)
    se = math.sqrt(2 / s["n_batches"])
    assert s["entropy_bits"] == pytest.approx(h_ref.mean(), abs=5 * se * h_ref.std())
    assert s["top_mass"] == pytest.approx(m_ref.mean(), abs=5 * se * m_ref.std())


@pytest.mark.parametrize("rows,size,entropy,top", [
    # batches of 4 rows: {a, a, a, b} -> H(3/4, 1/4), top 3/4; {a, b, c, d} -> 2 bits, top 1/4
    ([[0, 0], [0, 0], [0, 0], [0, 1], [0, 0], [0, 1], [1, 0], [1, 1]], 4,
     (stats.entropy([3, 1], base=2) + 2.0) / 2, (0.75 + 0.25) / 2),
    # one batch of 3 (the 4th row is left over): {a, a, b}
    ([[1, 0, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]], 3, stats.entropy([2, 1], base=2), 2 / 3),
])
def test_sample_concentration_is_the_batch_mean_of_scipy_entropy(rows, size, entropy, top):
    from bayes_sgd.claims import sample_concentration

    s = sample_concentration(np.array(rows, np.uint8), size)
    assert s["entropy_bits"] == pytest.approx(entropy, abs=1e-4)
    assert s["top_mass"] == pytest.approx(top, abs=1e-4)
    assert s["n_batches"] == len(rows) // size


def test_sample_concentration_more_draws_than_rows():
    from bayes_sgd.claims import sample_concentration

    with pytest.raises(ValueError, match="sample_size: expected at most 2"):
        sample_concentration(np.zeros((2, 3), np.uint8), 5)


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_width_figure_runs_every_width_and_corruption(scale):
    from bayes_sgd.reproduce import WIDTH_CORRUPTIONS, WIDTHS_N7, figure_configs

    assert WIDTHS_N7 == (1, 2, 4, 8, 16, 40, 128, 512, 2048)  # the widths, and 1-4 around the interpolation threshold
    cfgs = figure_configs("width_n7", scale=scale)
    runs = [(w, c) for c in WIDTH_CORRUPTIONS for w in WIDTHS_N7
            if scale == "paper" or c == 0 or w < 2048]  # 2048 corrupted: paper scale only
    assert list(cfgs) == [f"w{w}_c{c}" for w, c in runs]
    for w, c in runs:
        cfg = cfgs[f"w{w}_c{c}"]
        assert list(cfg.model.widths) == [w, w]
        assert cfg.task.target == corrupted_target("and4", n=7, train_size=16, train_seed=0,
                                                   fraction=c / 100)


def test_width_figure_draws_the_nngp_limit_as_the_gp_of_its_runs(tmp_path):
    """A tiny width figure (two widths, clean labels): its FIGURE.json's infinite-width point
    holds the GP's log10 P(S) and bound of the runs (the runner's numbers, summary.json)."""
    import json

    from bayes_sgd.reproduce import reproduce

    rc = reproduce("width_n7", out=tmp_path, quiet=True, only=("w8_c0", "w16_c0"),
                   overrides=["samplers.sgd.n_runs=12", "samplers.gp.max_functions=12"])
    assert rc == 0
    rep = json.loads((tmp_path / "width_n7" / "width_n7.json").read_text())
    m = rep["metrics"]
    assert {"w8_c0", "w16_c0", "nngp_c0"} <= set(m)
    for run in ("w8_c0", "w16_c0"):
        gp = json.loads((tmp_path / "width_n7" / run / "summary.json").read_text())["gp"]
        assert m["nngp_c0"]["log10_P_S"] == pytest.approx(gp["log10_P_S"], abs=1e-6)
        assert m["nngp_c0"]["pac_bayes_bound"] == pytest.approx(gp["pac_bayes_bound"], abs=1e-6)
    assert m["nngp_c0"]["sampled"]["sample_size"] == 12  # as many draws as SGD runs
    assert 0 <= m["nngp_c0"]["test_error"] <= 1


def test_posterior_test_error_with_a_zero_variance_input(tmp_path):
    """sigma_b = 0 and the all-zero input in E: f = 0 there for every network and every GP
    draw, so its label is 0 (f > 0 is 1) and, with the target's 1 there, it is an error with
    probability 1.  The other E inputs: the sum over all their sign patterns of the EP
    predictive's probability (scipy's multivariate normal CDF) times the pattern's errors."""
    import itertools

    from bayes_sgd.claims import posterior_test_error
    from bayes_sgd.experiment import run_experiment
    from bayes_sgd.gp import ep_posterior, ep_predictive
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import GPProblem, gp_kernel
    from bayes_sgd.tasks import build_task

    cfg = config_from_dict({
        "name": "zero", "seed": 0,
        "task": {"kind": "boolean", "n": 4, "target": "1001000100010111",
                 "train_mask": "0111011010110100"},
        "model": {"arch": "fcn", "widths": [8, 8], "sigma_b": 0.0},
        "samplers": {"rejection": {"n_samples": 1000}, "sgd": {"enabled": False}},
        "analysis": {"plot": False},
    })
    run_experiment(cfg, tmp_path, show_progress=False)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    prob = GPProblem.from_task(task, lambda X: gp_kernel(cfg, model, X)[0])
    S, E = slice(0, prob.n_S), slice(prob.n_S, None)
    K_EE = prob.K[E, E]
    zero = np.diag(K_EE) == 0
    assert zero.sum() == 1 and task.test_index[0] == 0 and task.y_test[0] == 1
    st = ep_posterior(prob.K[S, S], prob.y_S)
    mean, cov = ep_predictive(prob.K[S, S], prob.K[S, E][:, ~zero], K_EE[np.ix_(~zero, ~zero)], st)
    y = np.empty(prob.n_E, np.uint8)
    y[np.asarray(prob.e_slot) - prob.n_S] = task.y_test  # E's labels in the GP's slot order
    assert zero[prob.e_slot[0] - prob.n_S]  # the all-zero input's slot
    y = y[~zero]
    pats = np.array(list(itertools.product([0, 1], repeat=len(y))), np.uint8)
    p = np.array([stats.multivariate_normal(mean=-(2.0 * b - 1) * mean,
                                            cov=cov * np.outer(2.0 * b - 1, 2.0 * b - 1),
                                            allow_singular=True, abseps=1e-6, releps=1e-6)
                  .cdf(np.zeros(len(b))) for b in pats])
    assert p.sum() == pytest.approx(1.0, abs=2e-3)
    errs_other = ((pats != y[None, :]).sum(1) * p).sum() / p.sum()
    want = (1.0 + errs_other) / task.n_test  # the zero input: always wrong
    # abseps 1e-6 per pattern over 64 patterns
    assert posterior_test_error(tmp_path) == pytest.approx(want, abs=1e-4)
