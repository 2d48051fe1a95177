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
