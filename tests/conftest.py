"""Shared fixtures of the pipeline tests.

Dtype promotion.  ``jax.config.update("jax_numpy_dtype_promotion", "strict")`` is deliberately
NOT set here: under strict promotion the SGD sampler fails with the ``adam`` optimizer, inside
optax (``optax.tree_utils.tree_bias_correction`` computes ``decay ** count`` with a Python float
and an int32 step count -> ``TypePromotionError``), reached from
``bayes_sgd.samplers.SGDTrainer`` via ``make_optimizer("adam", ...)``.  Everything else in
the Boolean pipeline (rejection, SGD with sgd/momentum/adagrad/rmsprop, both losses, SGLD, the
function table and analysis) ran clean under strict promotion when this was checked.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from scipy.special import erf

# The old default experiment (and4, |S| = 16, SGD lr 0.1, 6e6 rejection samples), kept in the
# package as a small fixed config. Tests that start from "a full n = 7 config" load it by path,
# so they neither change meaning nor slow down when the default (boolean_n7.toml) changes.
QUICK_CONFIG = str(resources.files("bayes_sgd") / "experiments" / "quick_and4_n7.toml")

NP_ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
    "erf": erf,
    "linear": lambda h: h,
}


def numpy_fcn_forward(params, x, activation="relu"):
    """Plain float64 numpy forward pass of ONE FCN given as a sequence of {"w", "b"} dicts:
    h_{l+1} = W_l phi(h_l) + b_l (phi not applied to the input).  Returns (N,)."""
    phi = NP_ACTIVATIONS[activation]
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for l, layer in enumerate(params):
        if l > 0:
            h = phi(h)
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
    return h[:, 0]


def numpy_prior_outputs(rng, widths, sigma_w, sigma_b, x, n, activation="relu"):
    """Outputs (n, N) of n FCNs drawn with numpy from the NNGP prior: W ~ N(0, sigma_w^2/fan_in),
    b ~ N(0, sigma_b^2), independently of the library's JAX sampler."""
    phi = NP_ACTIVATIONS[activation]
    h = np.broadcast_to(np.asarray(x, np.float64), (n,) + np.shape(x))
    dims = [h.shape[-1], *widths, 1]
    for l, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        if l > 0:
            h = phi(h)
        w = rng.standard_normal((n, fan_in, fan_out)) * (sigma_w / np.sqrt(fan_in))
        b = rng.standard_normal((n, 1, fan_out)) * sigma_b
        h = h @ w + b
    return h[..., 0]


@pytest.fixture(scope="session")
def np_forward():
    return numpy_fcn_forward


@pytest.fixture(scope="session")
def np_prior_outputs():
    return numpy_prior_outputs


# A small real results folder (n = 5, widths [8], prior recorded), built once per test session
# and shared by test_results, test_notebooks and test_reproduce, also across xdist workers
# (the folder is keyed by the hash of its config).
TINY = ["name=tiny", "task.n=5", "task.target=and3", "task.train_size=8", "model.widths=[8]",
        "samplers.rejection.n_samples=20000", "samplers.rejection.record_prior=true",
        "samplers.sgd.n_runs=60", "samplers.sgd.max_epochs=200", "analysis.plot=false"]


def shared_tiny_results(tmp_path_factory, overrides=TINY):
    import hashlib
    import json
    import os
    import time

    from bayes_sgd.config import load_config
    from bayes_sgd.experiment import run_experiment

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by all workers of this session
    key = hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:10]
    out, lock = root / f"tiny-{key}", root / f"tiny-{key}.lock"

    def complete():
        m = out / "manifest.json"
        return m.exists() and json.loads(m.read_text()).get("status") == "complete"

    try:
        os.mkdir(lock)
    except FileExistsError:  # another worker builds it
        deadline = time.monotonic() + 900
        while not complete():
            if time.monotonic() > deadline or (lock / "failed").exists():
                pytest.fail("the shared tiny results folder was not built")
            time.sleep(0.5)
        return out
    try:
        run_experiment(load_config(QUICK_CONFIG, list(overrides)), out, show_progress=False)
    except BaseException:
        (lock / "failed").write_text("x")
        raise
    return out
