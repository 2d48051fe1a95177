"""The NUTS step of the runner (``bayes_sgd.samplers.run_nuts``).

The frame is checked against the raw ``NutsResult`` of the same key (sampling is deterministic
given the key): counts per function recounted here with a dict, importance-weighted
probabilities recomputed from ``log_weights`` by hand (tolerance 1e-12, float rounding only).
Both tests share one NUTS configuration so the program compiles once (~25 s on 2 cores).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import config_from_dict
from bayes_sgd.function_table import COLUMNS
from bayes_sgd.models import build_model
from bayes_sgd.samplers import stream_key
from bayes_sgd.samplers import sample_nuts
from bayes_sgd.samplers import run_nuts
from bayes_sgd.tasks import build_task

NUTS = {"enabled": True, "beta": 30.0, "num_chains": 2, "num_warmup": 150, "num_samples": 150}


def _cfg(**extra):
    return config_from_dict({
        "name": "tiny_nuts", "seed": 3,
        "task": {"kind": "boolean", "n": 3, "target": "majority", "train_mask": "11010100"},
        "model": {"arch": "fcn", "widths": [8], "activation": "relu", "sigma_w": 1.0,
                  "sigma_b": 0.5},
        "samplers": {"rejection": {"enabled": False}, "sgd": {"enabled": False}, "nuts": NUTS},
        "analysis": {"min_counts": [2]}, **extra})


def test_run_nuts_frame_matches_raw_samples():
    cfg = _cfg()
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    frame, diag = run_nuts(cfg, task, model)
    nc = cfg.samplers.nuts
    res = sample_nuts(model, task, key=stream_key(cfg.seed, "nuts"), beta=nc.beta,
                      num_chains=nc.num_chains, num_warmup=nc.num_warmup,
                      num_samples=nc.num_samples, thin=nc.thin)
    fits = res.fits_train
    n_fit = int(fits.sum())
    assert 0 < n_fit < res.n_samples  # the test is informative: some samples do not fit S
    strings = ["".join("1" if b else "0" for b in row) for row in res.functions_on_test]
    counts, halves = Counter(), defaultdict(lambda: [0, 0])
    wsum = defaultdict(float)
    w = np.exp(res.log_weights[fits] - res.log_weights[fits].max())
    for s, c, wk in zip(np.array(strings)[fits], res.chain[fits], w):
        counts[s] += 1
        halves[s][c % 2] += 1
        wsum[s] += wk

    assert list(frame.columns) == COLUMNS and (frame["sampler"] == "nuts").all()
    assert frame["function"].is_unique and set(frame["function"]) == set(counts)
    f = frame.set_index("function")
    assert all(f.loc[s, "count"] == c for s, c in counts.items())
    assert all([f.loc[s, "count_half0"], f.loc[s, "count_half1"]] == h for s, h in halves.items())
    assert frame["count"].sum() == n_fit == diag["n_fit"]
    assert frame["p"].sum() == pytest.approx(1.0, abs=1e-12)
    ref = pd.Series({s: v / w.sum() for s, v in wsum.items()})
    np.testing.assert_allclose(f.loc[ref.index, "p"], ref, rtol=1e-12)
    np.testing.assert_allclose(f["log10_p"], np.log10(f["p"]), rtol=1e-12)
    # the weighted p differ from raw frequencies (finite beta favours large margins)
    assert not np.allclose(f["p"], f["count"] / n_fit)
    err = [(np.frombuffer(s.encode(), np.uint8) - 48 != task.y_test).mean() for s in f.index]
    np.testing.assert_allclose(f["test_error"], err)
    assert diag["n_samples"] == res.n_samples == nc.num_chains * nc.num_samples
    assert diag["frac_fits_train"] == pytest.approx(n_fit / res.n_samples)
    assert diag["wall_time_s"] > 0 and "rhat_max" in diag and "ess_importance" in diag
    json.dumps(diag, allow_nan=False)


def test_run_experiment_writes_nuts_rows_and_diagnostics(tmp_path):
    from bayes_sgd.experiment import run_experiment

    cfg = _cfg()
    cfg.samplers.rejection.enabled, cfg.samplers.rejection.n_samples = True, 50_000
    summary = run_experiment(cfg, tmp_path, show_progress=False)
    df = pd.read_parquet(tmp_path / "functions.parquet")
    nuts = df[df["sampler"] == "nuts"]
    assert len(nuts) > 0 and nuts["p"].sum() == pytest.approx(1.0)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    d = on_disk["nuts"]
    assert d["n_fit"] == int(nuts["count"].sum()) and d["n_samples"] == 300
    for k in ("rhat_max", "ess_bulk_min", "divergences", "accept_prob_mean", "ess_importance",
              "frac_fits_train", "wall_time_s"):
        assert k in d
    assert "nuts" in on_disk["agreement"]["split_half"]
    assert on_disk["agreement"]["pairs"]["nuts_vs_rejection"]["k=2"]["with_target"]["n_functions"] > 0
    assert (tmp_path / "scatter.png").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["totals"]["nuts"]["n_fit"] == d["n_fit"]
    assert summary["timings_s"]["nuts_s"] > 0


def test_run_nuts_with_nothing_fitting_gives_empty_frame():
    from bayes_sgd.samplers import NutsResult
    from bayes_sgd.samplers import nuts_frame

    cfg = _cfg()
    task = build_task(cfg.task)
    res = NutsResult(functions_on_test=np.zeros((4, task.n_test), bool),
                     fits_train=np.zeros(4, bool), chain=np.array([0, 0, 1, 1]),
                     log_weights=np.full(4, -np.inf))
    frame = nuts_frame(res, task)
    assert len(frame) == 0 and list(frame.columns) == COLUMNS
