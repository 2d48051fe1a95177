"""SGLD in the SGD sampler against the exact stationary law of Langevin steps on a quadratic.

Setting: a network with no hidden layer (FCN 3 -> 1, i.e. out = x.w + b) trained full-batch
with the MSE loss L(theta) = mean_S (x~.theta + 1/2 - y)^2, x~ = (x, 1), so that L is exactly
quadratic: grad L = H (theta - theta*), H = (2/m) X~^T X~, theta* = the least-squares solution.
One SGLD step is theta <- theta - lr H (theta - theta*) + sqrt(2 lr T) xi, xi ~ N(0, I): a
linear Gaussian recursion whose stationary law is N(theta*, Sigma) with, in the eigenbasis
(h_i, u_i) of H,

    Var(u_i . theta) = 2 lr T / (1 - (1 - lr h_i)^2) = T / h_i * 2 / (2 - lr h_i),

exact for any lr < 2 / h_max (the continuous-time limit T / h_i is off by the factor
2 / (2 - lr h_i)).  lr is chosen so that lr h_max = 1.2: there the factor is 2.5, so the test
tells the discrete law from the continuous one and from a noise scale off by a factor 2.
The reference (theta*, h_i, u_i) comes from numpy's lstsq / eigh on the inputs, independent
of the trainer.  Runs start from the prior and take N steps; (1 - lr h_min)^N < 1e-10, so the
start is forgotten.  1024 independent runs give one stationary draw each.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayes_sgd.config import config_from_dict
from bayes_sgd.models import FCN
from bayes_sgd.samplers import stream_key
from bayes_sgd.samplers import SGDSettings, SGDTrainer
from bayes_sgd.tasks import boolean_task

TASK = boolean_task(3, "majority", train_size=6, seed=0)
MODEL = FCN(3, (), "linear", sigma_w=1.0, sigma_b=1.0)
P = 1024
T = 0.02


def _reference():
    x = np.hstack([TASK.x_train.astype(np.float64), np.ones((TASK.m, 1))])
    r = TASK.y_train.astype(np.float64) - 0.5
    theta_star = np.linalg.lstsq(x, r, rcond=None)[0]
    h, u = np.linalg.eigh(2.0 / TASK.m * x.T @ x)
    return theta_star, h, u


THETA_STAR, H_EIG, U = _reference()
LR = 1.2 / H_EIG.max()
N_STEPS = math.ceil(math.log(1e-10) / math.log(1 - LR * H_EIG.min()))


@pytest.fixture(scope="module")
def draws():
    """Parameters (w1, w2, w3, b) of P runs after N_STEPS full-batch SGLD steps, built from
    the [samplers.sgd] config fields (lr is the SGLD step size, sgld_temperature is T)."""
    cfg = config_from_dict({"samplers": {"sgd": {
        "n_runs": P, "lr": LR, "sgld_temperature": T, "loss": "mse", "batch_size": TASK.m,
        "max_epochs": N_STEPS + 10, "epochs_after_fit": N_STEPS + 10, "slots": P}}})
    settings = SGDSettings.from_config(cfg.samplers.sgd)
    assert settings.lr == LR and settings.sgld_temperature == T
    trainer = SGDTrainer(MODEL, TASK, settings, stream=stream_key(0, "sgd"))
    assert trainer.n_steps == 1  # full batch: one step per epoch, the gradient is exact
    st = trainer.refill(trainer.empty_state(), jnp.ones(P, bool), jnp.arange(P, dtype=jnp.int32))
    st = trainer.run_epochs(st, N_STEPS)
    assert not np.asarray(st.done).any() and (np.asarray(st.epoch) == N_STEPS).all()
    (layer,) = st.params
    return np.hstack([np.asarray(layer["w"], np.float64)[:, :, 0],
                      np.asarray(layer["b"], np.float64)])


def test_setting_is_informative():
    assert H_EIG.min() > 0.05  # X~ has full column rank: the stationary law exists
    assert N_STEPS < 2000
    factor = 2 / (2 - LR * H_EIG.max())
    assert factor == pytest.approx(2.5)


def test_sgld_stationary_law_matches_closed_form(draws):
    """z = u_i.(theta - theta*) / sd_i should be iid N(0, 1) over directions i and runs.
    Each direction: sum_runs z^2 ~ chi2(P), two-sided p > 1e-6; |mean z| < 5 / sqrt(P)
    (p ~ 6e-7); correlations between directions |r| < 5 / sqrt(P).  Over the 4 + 4 + 6 checks
    the false-failure rate is < 1e-5."""
    sd = np.sqrt(2 * LR * T / (1 - (1 - LR * H_EIG) ** 2))
    z = (draws - THETA_STAR) @ U / sd
    for i in range(4):
        stat = float((z[:, i] ** 2).sum())
        p = 2 * min(stats.chi2.cdf(stat, P), stats.chi2.sf(stat, P))
        assert p > 1e-6, (i, H_EIG[i], stat / P)
        assert abs(z[:, i].mean()) < 5 / math.sqrt(P), (i, z[:, i].mean())
    r = np.corrcoef(z.T)
    assert np.abs(r[np.triu_indices(4, 1)]).max() < 5 / math.sqrt(P), r


def test_continuous_limit_variance_is_rejected(draws):
    """Power check: along the stiffest direction the continuous-time variance T / h_max is
    2.5 times too small, and the variance of sqrt(lr T) noise (half of 2 lr T) is half the
    right one; the same chi2 test rejects both at p < 1e-12."""
    i = int(np.argmax(H_EIG))
    proj = (draws - THETA_STAR) @ U[:, i]
    right = 2 * LR * T / (1 - (1 - LR * H_EIG[i]) ** 2)
    for wrong in (T / H_EIG[i], right / 2):
        stat = float((proj**2).sum() / wrong)
        assert stats.chi2.sf(stat, P) < 1e-12, (wrong, right, (proj**2).mean())
