"""CNN layouts chosen for speed give the results of the plain ones.

* ``conv2d`` by im2col (shifted slices and one matrix product) against XLA's convolution, for
  VALID/SAME padding, odd/even kernels and strides 1/2 (float32: both sum the same k*k*C_in
  products in different orders, so they agree to float32 rounding, |x| ~ 1 -> ~1e-6).
* ``SGDTrainer`` with the CPU default for CNNs (slots one after another under ``lax.map``,
  im2col convolutions; finished slots and a finished run's last epoch of training skipped)
  against the plain layout (vmapped slots, XLA convolutions, every slot computed every
  epoch): the same run records (fitted, epoch of the fit, epochs trained, diverged) and the
  same function counts, for the same seed; with runs of different lengths, 1-epoch runs
  frozen for up to 16 epochs, and diverging runs.  Also the automatic convolution of "scan"
  slots on CPU (XLA's own, compiled without YNNPACK's convolutions): a different float32
  summation order again, the same records on these runs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_sgd.config import load_config
from bayes_sgd.models import CNN, build_model, conv2d
from bayes_sgd.models._cnn import xla_conv_compiler_options
from bayes_sgd.samplers import SGDSettings, SGDTrainer, stream_key
from bayes_sgd.tasks import build_task

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

CONV_CASES = [  # (H, W, kernel, stride, padding, C_in, C_out)
    (28, 28, 5, 1, "VALID", 1, 4),
    (24, 24, 2, 1, "SAME", 4, 3),
    (13, 11, 3, 2, "SAME", 2, 3),
    (13, 12, 4, 2, "VALID", 2, 3),
    (7, 7, 2, 2, "SAME", 3, 2),
    (6, 6, 1, 1, "VALID", 3, 2),
]


@pytest.mark.parametrize("H,W,k,s,pad,c_in,c_out", CONV_CASES)
def test_im2col_matches_xla_convolution(H, W, k, s, pad, c_in, c_out):
    rng = np.random.default_rng(H * 100 + k)
    h = jnp.asarray(rng.standard_normal((3, H, W, c_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out)) / k, jnp.float32)
    ref = np.asarray(conv2d(h, w, (s, s), pad, "xla"), np.float64)
    out = np.asarray(conv2d(h, w, (s, s), pad, "im2col"), np.float64)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("H,W,k,s,pad,c_in,c_out", [c for c in CONV_CASES if c[3] == 1])
def test_nhwc_conv_gradients_match_autodiff(H, W, k, s, pad, c_in, c_out):
    """"nhwc" (stride 1; its backward convolutions written out in NHWC x HWIO form, a custom
    VJP) against autodiff of XLA's convolution: the value and both gradients of
    sum(conv(h, w) * r), to float32 rounding (sums of <= k*k*max(C) ~ 100 products of O(1)
    terms, summed in other orders: ~1e-6 relative)."""
    rng = np.random.default_rng(H * 100 + k + 7)
    h = jnp.asarray(rng.standard_normal((3, H, W, c_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out)) / k, jnp.float32)
    r = jnp.asarray(rng.standard_normal(conv2d(h, w, (s, s), pad, "xla").shape), jnp.float32)

    def f(impl):
        return jax.value_and_grad(lambda h, w: jnp.sum(conv2d(h, w, (s, s), pad, impl) * r),
                                  argnums=(0, 1))(h, w)

    (v_ref, (dh_ref, dw_ref)), (v, (dh, dw)) = f("xla"), jax.jit(lambda: f("nhwc"))()
    np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
    assert dh.shape == dh_ref.shape and dw.shape == dw_ref.shape
    np.testing.assert_allclose(np.asarray(dh), np.asarray(dh_ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), np.asarray(dw_ref), rtol=1e-5, atol=1e-4)


def _digits_task_and_cnn(conv: str):
    cfg = load_config(QUICK_CONFIG, [
        "task.kind=image", "task.dataset=digits", "task.train_size=40", "task.test_size=20",
        "task.train_seed=3", "model.arch=cnn", "model.filters=[4,4]",
        "model.kernel_sizes=[3,2]", "model.strides=[1,1]", 'model.padding=["VALID","SAME"]',
        'model.pooling="none"', "model.dense_widths=[]", "model.sigma_b=0.0357",
        "samplers.rejection.enabled=false"])
    task = build_task(cfg.task)
    base = build_model(cfg.model, task.input_shape)
    return task, CNN(**{**base.__dict__, "conv": conv})


LAYOUT_CASES = [  # (settings, epochs per sync, at least this many runs fit, diverge)
    # runs of different lengths: finished slots sit frozen in the pipeline, then are refilled
    (dict(n_runs=6, optimizer="adam", lr=0.01, batch_size=16, max_epochs=60, slots=3), 4, 4, 0),
    # the benchmark's 1-epoch runs: a run's last fit check is its only work after one epoch,
    # and its slot stays frozen for up to 16 epochs
    (dict(n_runs=4, optimizer="adam", lr=0.01, batch_size=16, max_epochs=1, slots=2), 8, 0, 0),
    # diverging runs: a diverged slot is not frozen (its fit flag is recomputed once)
    (dict(n_runs=4, optimizer="sgd", lr=1e8, batch_size=16, max_epochs=6, slots=2), 2, 0, 1),
]
# the first case runs in the default suite; the 1-epoch and diverging cases (about half of this
# file's time) in the slow pass
LAYOUT_PARAMS = [pytest.param(*c, marks=() if i == 0 else pytest.mark.slow)
                 for i, c in enumerate(LAYOUT_CASES)]


def _assert_same_runs(results, n_runs, min_fit, min_div):
    """Both layouts' records and counts are equal, and the comparison has content: runs fit,
    or diverge, as the case intends."""
    (rec_a, (keys_a, counts_a)), *others = results.values()
    assert len(rec_a) == n_runs
    assert sum(r[0] for r in rec_a.values()) >= min_fit
    assert sum(r[3] for r in rec_a.values()) >= min_div
    for rec_b, (keys_b, counts_b) in others:
        assert rec_a == rec_b
        np.testing.assert_array_equal(keys_a, keys_b)
        np.testing.assert_array_equal(counts_a, counts_b)


@pytest.mark.parametrize("settings,per_sync,min_fit,min_div", LAYOUT_PARAMS)
def test_cnn_layouts_give_identical_runs(settings, per_sync, min_fit, min_div):
    results = {}
    for layout, conv in (("vmap", "xla"), ("scan", "im2col"), ("scan", "auto")):
        task, model = _digits_task_and_cnn(conv)
        if jax.default_backend() == "cpu":  # the automatic choice for CNNs on CPU
            assert SGDTrainer(model, task, SGDSettings(**settings),
                              stream=stream_key(0, "sgd")).slot_layout == "scan"
        tr = SGDTrainer(model, task, SGDSettings(**settings), stream=stream_key(0, "sgd"),
                        slot_layout=layout)
        if conv == "auto" and jax.default_backend() == "cpu":
            # one network at a time: XLA's convolution, compiled without YNNPACK's
            assert tr.model.conv == "nhwc"
            assert tr._jit_options == xla_conv_compiler_options()
        res = tr.run(range(settings["n_runs"]), epochs_per_sync=per_sync)
        results[layout, conv] = (res.records, res.counter.table())
    _assert_same_runs(results, settings["n_runs"], min_fit, min_div)


def _digits_task_and_fcn(widths):
    cfg = load_config(QUICK_CONFIG, [
        "task.kind=image", "task.dataset=digits", "task.train_size=40", "task.test_size=20",
        "task.train_seed=3", "model.arch=fcn", f"model.widths={list(widths)}",
        "model.sigma_b=0.0357", "samplers.rejection.enabled=false"])
    task = build_task(cfg.task)
    return task, build_model(cfg.model, task.input_shape)


def test_fcn_layout_chosen_by_step_size():
    """Vmapped slots for small FCNs (the paper's Boolean 7-40-40-1 at batch 8: 3.1e4 FLOPs a
    step), one network at a time on CPU once a step is >= SCAN_MIN_STEP_FLOPS (an MNIST FCN
    784-512-512-1 at batch 32: 2 x (784*512 + 512*512 + 512) x 32 = 4.3e7)."""
    from bayes_sgd.models import FCN
    from bayes_sgd.samplers._sgd import SCAN_MIN_STEP_FLOPS, forward_flops

    assert forward_flops(FCN(7, (40, 40)), (7,)) * 8 < SCAN_MIN_STEP_FLOPS
    assert forward_flops(FCN(784, (512, 512)), (784,)) * 32 >= SCAN_MIN_STEP_FLOPS
    s = dict(n_runs=4, optimizer="adam", lr=0.01, batch_size=16, max_epochs=4, slots=2)
    for widths, big in (((16,), False), ((512, 512), True)):  # 2.1e3 / 5.9e5 FLOPs a row
        task, model = _digits_task_and_fcn(widths)
        want = "scan" if big and jax.default_backend() == "cpu" else "vmap"
        assert SGDTrainer(model, task, SGDSettings(**s),
                          stream=stream_key(0, "sgd")).slot_layout == want


@pytest.mark.parametrize("settings,per_sync,min_fit,min_div", LAYOUT_PARAMS)
def test_fcn_layouts_give_identical_runs(settings, per_sync, min_fit, min_div):
    """The FCN's two layouts on the cases above: the same records and counts (float32
    batched and unbatched products may round differently; on this task no decision flips)."""
    results = {}
    for layout in ("vmap", "scan"):
        task, model = _digits_task_and_fcn((32, 32))
        tr = SGDTrainer(model, task, SGDSettings(**settings), stream=stream_key(0, "sgd"),
                        slot_layout=layout)
        res = tr.run(range(settings["n_runs"]), epochs_per_sync=per_sync)
        results[layout] = (res.records, res.counter.table())
    _assert_same_runs(results, settings["n_runs"], min_fit, min_div)
