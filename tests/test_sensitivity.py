"""The sensitivity table's rows (bayes_sgd.figures): a run with fewer SGD runs than the base is
read against the base on as many of its runs (``subsample_runs``), and the test errors."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import config_from_dict


def _tiny_run(folder, *, n_runs, seed):
    """n = 4, |S| = 10, |E| = 6, SGD + GP (joint): seconds."""
    from bayes_sgd.experiment import run_experiment

    cfg = config_from_dict({
        "name": "tiny", "seed": seed,
        "task": {"kind": "boolean", "n": 4, "target": "0001000100010111", "train_size": 10},
        "model": {"arch": "fcn", "widths": [8, 8]},
        "samplers": {"rejection": {"enabled": False},
                     "sgd": {"n_runs": n_runs, "lr": 0.1, "batch_size": 5, "max_epochs": 300},
                     "gp": {"enabled": True, "mode": "joint", "max_functions": 64}},
        "analysis": {"plot": False, "min_counts": [2]},
    })
    run_experiment(cfg, folder, show_progress=False)
    return cfg


def _table(counts):
    p = np.array([*(np.array(counts) / sum(counts)), 0.5])
    return pd.DataFrame({"sampler": ["sgd"] * len(counts) + ["gp"],
                         "function": [f"f{i}" for i in range(len(counts))] + ["f0"],
                         "count": [*counts, np.nan], "p": p, "log10_p": np.log10(p)})


def test_subsample_runs_is_a_draw_without_replacement():
    from bayes_sgd.figures import subsample_runs

    counts = [50, 30, 15, 4, 1]
    n = 20
    draws = np.array([subsample_runs(_table(counts), n, seed=s).query("sampler == 'sgd'")
                      .set_index("function")["count"].reindex([f"f{i}" for i in range(5)])
                      .fillna(0).to_numpy() for s in range(400)])
    assert (draws.sum(1) == n).all() and (draws <= np.array(counts)).all()
    # mean and variance of a multivariate hypergeometric count (N = 100): n K/N and
    # n K/N (1 - K/N) (N - n)/(N - 1); 5 standard errors of the mean of 400 draws
    N, K = sum(counts), np.array(counts, float)
    mean, var = n * K / N, n * K / N * (1 - K / N) * (N - n) / (N - 1)
    assert np.all(np.abs(draws.mean(0) - mean) <= 5 * np.sqrt(var / 400) + 1e-12)
    one = subsample_runs(_table(counts), n, seed=0)
    sgd = one[one["sampler"] == "sgd"]
    assert np.allclose(sgd["p"], sgd["count"] / n) and (sgd["count"] > 0).all()
    assert one[one["sampler"] == "gp"].reset_index(drop=True).equals(
        _table(counts).iloc[[5]].reset_index(drop=True))  # the GP rows untouched
    assert subsample_runs(_table(counts), N, seed=3).query("sampler == 'sgd'")["count"].tolist() == counts


@pytest.mark.parametrize("n", [0, 101])
def test_subsample_runs_rejects_sizes_outside_the_samples(n):
    from bayes_sgd.figures import subsample_runs

    with pytest.raises(ValueError, match=r"n: expected an integer in \[1, 100\]"):
        subsample_runs(_table([50, 30, 15, 4, 1]), n)


def test_a_row_with_fewer_runs_is_read_against_the_base_on_as_many(tmp_path):
    from bayes_sgd.claims import nngp_limit
    from bayes_sgd.figures import draw_sensitivity, sensitivity_markdown

    base, few = tmp_path / "base", tmp_path / "few"
    _tiny_run(base, n_runs=60, seed=1)
    _tiny_run(few, n_runs=20, seed=2)
    fig, metrics = draw_sensitivity({"base": base, "few": few}, titles={"base": "base"},
                                    details=True)
    assert list(metrics) == ["base", "base@20", "few"]
    sub = metrics["base@20"]
    # brute-force recount of the subsampled base: the same hypergeometric draw (seed 0) of the
    # base's SGD counts, its share of runs within a decade of the GP's P_B
    df = pd.read_parquet(base / "functions.parquet")
    sgd, gp = df[df["sampler"] == "sgd"], df[df["sampler"] == "gp"].set_index("function")["p"]
    c = np.random.default_rng(0).multivariate_hypergeometric(sgd["count"].astype(np.int64).to_numpy(), 20)
    pb = gp.reindex(sgd["function"]).to_numpy(float)
    near = sum(ci / 20 for ci, b in zip(c, pb) if ci > 0 and b > 0 and abs(math.log10(ci / 20 / b)) <= 1)
    assert sub["measures"]["frac_within_1_decades"]["value"] == pytest.approx(near, abs=1e-12)
    assert sub["sgd_n_functions"] == int((c > 0).sum())
    # the verdict of the 20-run row uses the 20-run base's interval, not the 60-run base's
    lo, hi = metrics["few"]["measures"]["frac_within_1_decades"]["ci"]
    blo, bhi = sub["measures"]["frac_within_1_decades"]["ci"]
    want = "nearer" if lo > bhi else "further" if hi < blo else "no clear change"
    assert metrics["few"]["verdict"] == want and metrics["few"]["verdict_against"] == "base@20"
    # test errors: P_SGD-weighted recount, and the posterior's = nngp_limit's (tested against
    # brute force over all 2^6 functions on E in test_claims.py)
    s = df[df["sampler"] == "sgd"]
    assert metrics["base"]["sgd_test_error"] == pytest.approx(
        (s["test_error"] * s["count"]).sum() / s["count"].sum(), abs=1e-4)
    assert metrics["base"]["pb_test_error"] == pytest.approx(
        nngp_limit(base, n_draws=60)["test_error"], abs=1e-4)
    assert metrics["base"]["run_time_s"] >= 0
    md = sensitivity_markdown(metrics, titles={"base": "base"}).splitlines()
    assert len(md) == 2 + 3 and md[3].startswith("| base, 20 of its runs |")
    assert md[4].endswith(f"| {want} (vs base, 20 of its runs) |")
