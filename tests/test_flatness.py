"""Sharpness (``bayes_sgd.flatness``) against the dense Hessian, and the retrained networks
against the runner's own counts.

References: ``jax.hessian`` of the flat training loss and ``numpy.linalg.eigvalsh`` / its
trace on networks of 30-60 parameters.  Tolerances:

* Lanczos lambda_max vs eigvalsh: relative 1e-3 (float32 Hessian-vector products; with
  ``steps`` >= the dimension Lanczos is exact up to rounding, measured ~1e-6);
* Hutchinson: |estimate - tr H| < 4 standard deviations, with the standard deviation from the
  dense H (Var(z^T H z) = 2 sum_{i != j} H_ij^2 for Rademacher z): a false-failure rate of
  ~6e-5 per case (normal approximation, 2,000 probes).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import config_from_dict
from bayes_sgd.flatness import (dense_hessian, functions_of, hutchinson_trace, loss_on_S,
                                rescale_layers, top_eigenvalue, trained_networks)
from bayes_sgd.gp import fcn_nngp_kernel_for
from bayes_sgd.models import FCN
from bayes_sgd.samplers import GPProblem
from bayes_sgd.tasks import boolean_task

TASK = boolean_task(4, "majority", mask="1101010110010110")  # |S| = 9, |E| = 7


def _net(widths, seed, scale=1.0):
    model = FCN(4, widths, "relu", sigma_w=1.5, sigma_b=0.5)
    p = model.init(key=jax.random.key(seed), n=1)
    return model, jax.tree_util.tree_map(lambda a: a[0] * scale, p)


CASES = [  # (widths, seed, loss)
    ((4,), 0, "bce"),
    ((5, 3), 1, "bce"),
    ((4, 4), 2, "mse"),
]


@pytest.mark.parametrize("widths,seed,loss", CASES)
def test_top_eigenvalue_and_trace_match_the_dense_hessian(widths, seed, loss):
    model, p = _net(widths, seed)
    f = loss_on_S(model, loss, TASK.x_train, TASK.y_train)
    H = dense_hessian(f, p).astype(np.float64)
    H = 0.5 * (H + H.T)
    ev = np.linalg.eigvalsh(H)
    lam = top_eigenvalue(f, p, key=jax.random.key(seed), steps=H.shape[0])
    assert lam == pytest.approx(ev[-1], rel=1e-3, abs=1e-6)
    # fewer steps than the dimension: the top Ritz value still converges (well separated here)
    lam20 = top_eigenvalue(f, p, key=jax.random.key(seed + 10), steps=20)
    assert lam20 == pytest.approx(ev[-1], rel=1e-3, abs=1e-6)
    n = 2000
    est, se = hutchinson_trace(f, p, key=jax.random.key(100 + seed), n_probes=n)
    sd = np.sqrt(2 * (np.sum(H ** 2) - np.sum(np.diag(H) ** 2)) / n)
    assert abs(est - np.trace(H)) < 4 * sd + 1e-6
    assert se == pytest.approx(sd, rel=0.2)  # the probes' own spread agrees with the formula


def test_lanczos_finds_the_largest_not_the_largest_magnitude():
    # f(v) = 1/2 v^T A v with A's most negative eigenvalue larger in magnitude than its top one
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    evs = np.linspace(-5.0, 2.0, 12)
    A = jnp.asarray((Q * evs) @ Q.T, jnp.float32)
    f = lambda p: 0.5 * p["x"] @ A @ p["x"]
    lam = top_eigenvalue(f, {"x": jnp.zeros(12)}, key=jax.random.key(0), steps=12)
    assert lam == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize("layer,a", [(0, 3.0), (1, 0.25), (0, 10.0)])
def test_rescaling_keeps_the_function_and_log_PB_but_changes_sharpness(layer, a):
    model, p = _net((5, 4), 3)
    q = rescale_layers(p, layer, a)
    x_all = jnp.asarray(TASK.x_all)
    out_p, out_q = np.asarray(model.apply(p, x_all)), np.asarray(model.apply(q, x_all))
    np.testing.assert_allclose(out_q, out_p, rtol=1e-5, atol=1e-5)
    # sharpness is not invariant: dense references for both parameterisations
    f = loss_on_S(model, "bce", TASK.x_train, TASK.y_train)
    ev_p = np.linalg.eigvalsh(dense_hessian(f, p).astype(np.float64))[-1]
    ev_q = np.linalg.eigvalsh(dense_hessian(f, q).astype(np.float64))[-1]
    assert abs(np.log(ev_q / ev_p)) > np.log(1.5)
    assert top_eigenvalue(f, q, key=jax.random.key(1), steps=60) == pytest.approx(ev_q, rel=1e-3)
    # log P_B(f|S) depends on the function only: score both networks' functions on E with the GP
    fp = functions_of(model, jax.tree_util.tree_map(lambda t: t[None], p), TASK.x_test)
    fq = functions_of(model, jax.tree_util.tree_map(lambda t: t[None], q), TASK.x_test)
    assert fp == fq
    prob = GPProblem.from_task(TASK, lambda X: fcn_nngp_kernel_for(model, X))
    bits = np.array([[c == "1" for c in s] for s in fp + fq], np.uint8)
    sc = prob.score(bits, method="ep", mode="joint")
    assert np.isfinite(sc.log10_p).all()
    assert sc.log10_p[0] == pytest.approx(sc.log10_p[1], abs=1e-12)  # EP is deterministic


def test_rescale_rejects_bad_input():
    _, p = _net((4, 4), 0)
    with pytest.raises(ValueError, match="a: expected a scale > 0"):
        rescale_layers(p, 0, 0.0)
    with pytest.raises(ValueError, match="layer: expected"):
        rescale_layers(p, 2, 2.0)


def test_retrained_networks_are_the_ones_the_runner_counted(tmp_path):
    from bayes_sgd.experiment import run_experiment

    cfg = config_from_dict({
        "name": "retrain", "seed": 3,
        "task": {"kind": "boolean", "n": 5, "target": "and4", "train_size": 12},
        "model": {"arch": "fcn", "widths": [16, 16]},
        "samplers": {"rejection": {"enabled": False},
                     "sgd": {"n_runs": 40, "lr": 0.1, "batch_size": 4, "max_epochs": 300}},
        "analysis": {"plot": False},
    })
    run_experiment(cfg, tmp_path, show_progress=False)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    fn = pd.read_parquet(tmp_path / "functions.parquet")
    fn = fn[fn["sampler"] == "sgd"]
    params, rec, model, task = trained_networks(cfg, runs["run_id"].to_numpy(), slots=7)
    np.testing.assert_array_equal(rec["fitted"], runs["fitted"].to_numpy())
    np.testing.assert_array_equal(rec["epochs"], runs["epochs_trained"].to_numpy())
    funcs = np.array(functions_of(model, params, task.x_test))
    mine = pd.Series(funcs[rec["fitted"]]).value_counts().sort_index()
    theirs = fn.set_index("function")["count"].astype(int).sort_index()
    assert mine.to_dict() == theirs.to_dict()
    assert json.loads((tmp_path / "summary.json").read_text())["sgd"]["n_fitted"] == rec["fitted"].sum()
