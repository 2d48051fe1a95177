"""The image pipeline end to end, each check against an independent reference.

* ``run_experiment`` on tiny binarised-digits tasks (FCN and 2-layer CNN, SGD + GP): the
  results folder is complete, every run fitted S, the target on E equals scikit-learn's own
  labels (``label >= 5``) at the rows the task says it drew, and ``test_error`` of every row
  is the Hamming fraction to that target.
* SGD fit check: the trainer's "fits S" flag (evaluated in chunks of S when |S| >
  ``FIT_CHUNK``) against a plain one-shot forward pass of the final parameters.
* Slot count: memory-bounded and capped by ``n_runs``; the activation estimate against the
  layer sizes counted by hand.
* NNGP: the Monte-Carlo kernel of a CNN whose single conv kernel covers the whole image (a
  dense layer on the flattened image) against the analytic one-hidden-layer FCN kernel.
* Configs: every ``experiments/image_*.toml`` loads and builds its model.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import config_from_dict, load_config
from bayes_sgd.experiment import run_experiment
from bayes_sgd.gp import fcn_nngp_kernel, mc_kernel_stderr, mc_nngp_kernel
from bayes_sgd.models import CNN, FCN, build_model
from bayes_sgd.samplers import _sgd as sgd_mod
from bayes_sgd.samplers import SGDSettings, SGDTrainer, stream_key
from bayes_sgd.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
SIGMA_W, SIGMA_B = 1.0, 0.0357  # the paper's MNIST prior


def _digits_cfg(arch: str, *, m=50, k=20, n_runs=8, gp=True) -> dict:
    model = {"arch": "fcn", "widths": [16, 16]} if arch == "fcn" else {
        "arch": "cnn", "filters": [4, 4], "kernel_sizes": [3, 3], "strides": [1, 1],
        "padding": ["VALID", "VALID"], "dense_widths": []}
    return {
        "name": f"tiny_digits_{arch}", "seed": 0,
        "task": {"kind": "image", "dataset": "digits", "train_size": m, "test_size": k,
                 "train_seed": 3},
        "model": {**model, "activation": "relu", "sigma_w": SIGMA_W, "sigma_b": SIGMA_B},
        "samplers": {
            "rejection": {"enabled": False},
            "sgd": {"n_runs": n_runs, "optimizer": "adam", "lr": 0.01, "batch_size": 16,
                    "max_epochs": 300},
            "gp": {"enabled": gp, "method": "ep", "mode": "conditional",
                   "kernel": "analytic" if arch == "fcn" else "monte-carlo",
                   "mc_samples": 1000},
        },
        "analysis": {"min_counts": [1], "plot": True},
    }


@pytest.mark.parametrize("arch", ["fcn", "cnn"])
def test_run_experiment_tiny_digits(arch, tmp_path):
    from sklearn.datasets import load_digits

    cfg = config_from_dict(_digits_cfg(arch))
    summary = run_experiment(cfg, tmp_path, show_progress=False)

    for name in ("functions.parquet", "runs.parquet", "summary.json", "scatter.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "manifest.json").read_text())["status"] == "complete"

    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert len(runs) == 8 and runs["fitted"].all() and not runs["diverged"].any()
    assert summary["sgd"]["n_fitted"] == 8

    # the target on E from scikit-learn's labels at the rows the task drew (independent of
    # the binarisation code), and test_error = Hamming fraction to it
    task = build_task(cfg.task)
    labels = load_digits().target
    target = (labels[task.meta["source_test_index"]] >= 5).astype(np.uint8)
    np.testing.assert_array_equal(target, task.y_test)
    assert summary["task"]["target_on_E"] == "".join(map(str, target))
    df = pd.read_parquet(tmp_path / "functions.parquet")
    bits = np.array([[int(c) for c in f] for f in df["function"]], np.uint8)
    assert bits.shape[1] == 20
    np.testing.assert_allclose(df["test_error"].to_numpy(float), (bits != target).mean(1),
                               rtol=0, atol=1e-12)

    sgd = df[df["sampler"] == "sgd"]
    assert int(sgd["count"].sum()) == 8
    gp = df[df["sampler"] == "gp"]
    # the GP scores exactly the functions SGD found, each a probability (log10 p <= 0)
    assert set(gp["function"]) == set(sgd["function"])
    assert np.all(np.isfinite(gp["log10_p"])) and np.all(gp["log10_p"] <= 1e-9)
    assert summary["gp"]["kernel"] == ("analytic" if arch == "fcn" else "monte-carlo")
    assert summary["gp"]["n_functions"] == len(sgd)


def test_fit_check_in_chunks_matches_one_forward_pass(monkeypatch):
    """Runs the trainer's slots by hand, with S evaluated in chunks of 16 rows (|S| = 60, last
    chunk padded), then re-evaluates the final parameters of every slot on the whole of S."""
    monkeypatch.setattr(sgd_mod, "FIT_CHUNK", 16)
    cfg = config_from_dict(_digits_cfg("fcn", m=60, k=20, n_runs=8, gp=False))
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    tr = SGDTrainer(model, task, SGDSettings.from_config(cfg.samplers.sgd),
                    stream=stream_key(0, "sgd"))
    assert tr.fit_chunk == 16 and tr.x_s_chunks.shape[:2] == (4, 16) and tr.P == 8

    state = tr.refill(tr.empty_state(), jnp.ones(8, bool), jnp.arange(8, dtype=jnp.int32))
    # before training: the chunked flag equals the one-shot evaluation
    out0 = np.asarray(model.apply_batched(state.params, jnp.asarray(task.x_train)))
    fits0 = ((out0 > 0) == (task.y_train > 0)).all(1)
    np.testing.assert_array_equal(np.asarray(jax.vmap(tr._fits)(state.params)), fits0)
    for _ in range(100):
        state = tr.run_epochs(state, 4)
        if bool(np.asarray(state.done).all()):
            break
    fit_epoch = np.asarray(state.fit_epoch)
    assert (fit_epoch >= 0).all()
    out = np.asarray(model.apply_batched(state.params, jnp.asarray(task.x_train)), np.float64)
    assert ((out > 0) == (task.y_train > 0)).all(), "a slot flagged as fitted misclassifies S"
    # and the packed functions on E are the signs of a plain evaluation on E
    f_e = np.asarray(model.apply_batched(state.params, jnp.asarray(task.x_test))) > 0
    np.testing.assert_array_equal(np.asarray(tr.functions_on_test(state.params)),
                                  np.packbits(f_e, axis=-1))


def _activation_floats(model, x_shape, n_params) -> float:
    """Activation floats per input row, read off ``SGDTrainer.slot_bytes``: with plain SGD (no
    optimiser state) one slot is 4 bytes x (4 x parameters + rows x activations), rows =
    max(3 x batch, fit chunk, |E|) (the documented estimate)."""
    from bayes_sgd.tasks import Task

    rng = np.random.default_rng(0)
    task = Task("t", rng.random((1000, *x_shape), np.float32), rng.integers(0, 2, 1000, np.uint8),
                rng.random((100, *x_shape), np.float32), rng.integers(0, 2, 100, np.uint8))
    tr = SGDTrainer(model, task, SGDSettings(n_runs=1, optimizer="sgd", batch_size=32),
                    stream=stream_key(0, "sgd"))
    rows = max(3 * 32, tr.fit_chunk, task.n_test)
    return (tr.slot_bytes / 4 - 4 * n_params) / rows


def test_activation_estimate_and_memory_bounded_slots():
    # FCN 64-32-16-1: pre- and post-activation of each hidden layer at least, per input row
    fcn = FCN(in_dim=64, widths=(32, 16))
    a = _activation_floats(fcn, (64,), 64 * 32 + 32 + 32 * 16 + 16 + 16 + 1)
    assert 2 * (32 + 16) + 1 <= a <= 64 + 4 * (32 + 16) + 4, a
    # CNN 28x28: feature maps 24x24x8 (VALID 5) and 24x24x8 (SAME 2), pre/post activation
    cnn = CNN(input_shape=(28, 28, 1), filters=(8, 8), kernel_sizes=(5, 2),
              padding=("VALID", "SAME"))
    maps = 2 * (24 * 24 * 8 + 24 * 24 * 8)
    a = _activation_floats(cnn, (28, 28, 1), cnn.n_params)
    # im2col convolutions (the CPU default, models._cnn.conv_impl) add per layer the patch
    # matrix out_h*out_w*k*k*C_in, its k*k slices and the SAME-padded input
    patches = 24 * 24 * 25 * 1 + 24 * 24 * 4 * 8
    extra = 2 * patches + 25 * 25 * 8 if cnn.conv == "im2col" or (
        cnn.conv == "auto" and jax.default_backend() == "cpu") else 0
    assert maps <= a <= 2 * maps + extra, (a, maps, extra)

    from bayes_sgd.tasks import Task
    rng = np.random.default_rng(0)
    task = Task("t", rng.random((1000, 28, 28, 1), np.float32), rng.integers(0, 2, 1000, np.uint8),
                rng.random((100, 28, 28, 1), np.float32), rng.integers(0, 2, 100, np.uint8))
    s = SGDSettings(n_runs=10_000, optimizer="adam", batch_size=32)
    tr = SGDTrainer(cnn, task, s, stream=stream_key(0, "sgd"), slot_layout="vmap")
    # per slot: >= 128 rows (fit chunk) of feature maps in float32
    assert tr.fit_chunk == 128 and tr.slot_bytes >= 4 * 128 * maps
    assert tr.P * tr.slot_bytes <= s.memory_budget_bytes
    s_small = SGDSettings(n_runs=10_000, optimizer="adam", batch_size=32,
                          memory_budget_bytes=3 * tr.slot_bytes + 1)
    assert SGDTrainer(cnn, task, s_small, stream=stream_key(0, "sgd"),
                      slot_layout="vmap").P == 3
    # slots trained one after another hold their own state (params x 4, Adam's mu and nu and
    # step count x 2, float32) and the activations of one slot at a time (of the trainer's
    # own model: on CPU XLA's convolutions, "nhwc", without im2col's patches)
    state = 4 * (4 * cnn.n_params + 2 * (2 * cnn.n_params + 1))
    act = SGDTrainer(cnn, task, s, stream=stream_key(0, "sgd"),
                     slot_layout="scan").slot_bytes - state
    assert act >= 4 * 128 * maps
    for budget, want in ((act + 5 * state, 5), (act + 5 * state - 1, 4), (1 << 40, 1024)):
        s_scan = SGDSettings(n_runs=10_000, optimizer="adam", batch_size=32,
                             memory_budget_bytes=budget)
        assert SGDTrainer(cnn, task, s_scan, stream=stream_key(0, "sgd"),
                          slot_layout="scan").P == want, budget
    assert SGDTrainer(cnn, task, SGDSettings(n_runs=5), stream=stream_key(0, "sgd")).P == 5
    assert SGDTrainer(cnn, task, SGDSettings(n_runs=100, slots=64),
                      stream=stream_key(0, "sgd")).P == 64  # explicit slots win


def test_mc_kernel_of_full_image_conv_equals_analytic_fcn_nngp():
    """A VALID conv whose kernel covers the whole 8x8 image is a dense layer on the flattened
    image (fan_in 64 either way), so the CNN's NNGP is the one-hidden-layer FCN's
    K^1 = sb^2 + sw^2 E[relu(u) relu(v)], exact at any width (no O(1/width) bias). Tolerance: 5
    Gaussian-output standard errors times sqrt(1 + 2/width) for the kurtosis of f at finite
    width, on 12 digits images (78 entries; false-failure rate < 1e-4)."""
    from sklearn.datasets import load_digits

    X = (load_digits().images[:12] / 16.0).astype(np.float32)[..., None]
    sw, sb, width, n = 2.0, 0.2, 128, 4000
    cnn = CNN(input_shape=(8, 8, 1), filters=(width,), kernel_sizes=(8,), sigma_w=sw, sigma_b=sb)
    K_mc = mc_nngp_kernel(cnn, X, key=jax.random.key(11), n_samples=n)
    K = fcn_nngp_kernel(X.reshape(12, -1), depth=1, sigma_w=sw, sigma_b=sb, activation="relu")
    tol = 5.0 * mc_kernel_stderr(K, n) * math.sqrt(1 + 2 / width)
    assert np.all(np.abs(K_mc - K) <= tol), np.max(np.abs(K_mc - K) / tol)
    # the comparison resolves the layer: the input-layer (depth 0) kernel is far off
    K0 = fcn_nngp_kernel(X.reshape(12, -1), depth=0, sigma_w=sw, sigma_b=sb)
    assert np.any(np.abs(K_mc - K0) > 3 * tol)


IMAGE_CONFIGS = sorted([*(ROOT / "experiments").glob("image_*.toml"),
                        *(ROOT / "experiments").glob("paper_images_*.toml")])


def test_image_configs_are_present_and_linked():
    names = {p.name for p in IMAGE_CONFIGS}
    assert {"image_mnist_fcn_quick.toml", "image_digits_cnn_quick.toml",
            "image_mnist_fcn_paper.toml", "image_mnist_cnn_paper.toml",
            "paper_images_fcn.toml", "paper_images_cnn.toml"} <= names
    for p in IMAGE_CONFIGS:  # symlinks into the package copy, like boolean_n7.toml
        assert p.is_symlink() and p.resolve().parent == ROOT / "bayes_sgd" / "experiments"


@pytest.mark.parametrize("path", IMAGE_CONFIGS, ids=[p.stem for p in IMAGE_CONFIGS])
def test_image_config_builds(path):
    cfg = load_config(path)
    assert cfg.task.kind == "image" and cfg.task.test_size == 100
    assert not cfg.samplers.rejection.enabled  # acceptance ~ 0 on images
    assert cfg.samplers.sgd.enabled and cfg.samplers.gp.enabled
    assert cfg.samplers.gp.mode == "conditional"
    if cfg.model.arch == "cnn":
        assert cfg.samplers.gp.kernel == "monte-carlo"
    shape = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1),
             "cifar10": (32, 32, 3)}[cfg.task.dataset]
    model = build_model(cfg.model, shape)
    if cfg.model.arch == "cnn":
        assert model.dense_widths == ()  # linear readout, as the paper's CNN
        if "paper" in path.stem:  # the paper's stack: 5, 2, 5, 2 / VALID, SAME, VALID, SAME
            ref = CNN.paper(shape, filters=tuple(cfg.model.filters), sigma_w=SIGMA_W,
                            sigma_b=SIGMA_B)
            assert model == ref
    if cfg.task.split == "train":
        assert cfg.task.train_size == 10_000 and cfg.task.test_split == "test"


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed")
def test_test_split_field_draws_E_from_the_other_split():
    cfg = config_from_dict({"task": {"kind": "image", "dataset": "fashion-mnist",
                                     "split": "train", "test_split": "test",
                                     "train_size": 30, "test_size": 10}})
    task = build_task(cfg.task)
    assert task.meta["test_from_separate_split"] and task.meta["test_split"] == "test"
    from bayes_sgd.datasets import load_fashion_mnist
    imgs, labels = load_fashion_mnist("test")
    idx = task.meta["source_test_index"]
    np.testing.assert_array_equal(task.x_test[..., 0], imgs[idx] / np.float32(255.0))
    np.testing.assert_array_equal(task.y_test, (labels[idx] >= 5).astype(np.uint8))
