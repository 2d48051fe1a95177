"""Several JAX devices: rejection chunks and SGD slots spread over all of them, with the same
counts as one device.

XLA's host platform is split into 2 CPU devices (``--xla_force_host_platform_device_count``),
which must be set before JAX starts, so the check runs in a subprocess that prints JSON.  The
reference is the same work on one device in that process; counts are integers, so the
comparison is exact.  The subprocess also records which devices the work ran on, so the test
fails if everything stayed on device 0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from bayes_sgd.config import load_config
    from bayes_sgd.experiment import sgd_trainer_and_run_kwargs
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import EvalLayout, make_chunk_fn, run_rejection_chunks, stream_key
    from bayes_sgd.tasks import build_task
    from importlib import resources

    # the small fixed n = 7 config (conftest.QUICK_CONFIG; this runs in a subprocess)
    QUICK_CONFIG = str(resources.files("bayes_sgd") / "experiments" / "quick_and4_n7.toml")
    cfg = load_config(QUICK_CONFIG, ["task.n=5", "task.target=and3", "task.train_size=6",
                             "model.widths=[8]", "samplers.sgd.max_epochs=300",
                             "samplers.sgd.batch_size=4", "samplers.sgd.lr=0.003",
                             "samplers.sgd.n_runs=96"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    devs = jax.devices()
    out = {"n_devices": len(devs)}

    fn = make_chunk_fn(model, layout, task.y_train, 512, True)
    kw = dict(chunk_size=512, n_samples=512 * 12, n_test=task.n_test, n_table=len(layout.x))
    one = run_rejection_chunks(fn, stream_key(0, "rejection"), range(12), **kw)
    ran_on = set()
    collect = fn.collect
    def spy_collect(handle):
        for a in jax.tree_util.tree_leaves(handle[2]):
            ran_on.update(str(d) for d in a.devices())
        return collect(handle)
    fn.collect = spy_collect
    many = run_rejection_chunks(fn, stream_key(0, "rejection"), range(12), devices=devs, **kw)
    out["rejection_equal"] = all(
        np.array_equal(a, b) for x, y in ((one.posterior, many.posterior), (one.prior, many.prior))
        for a, b in zip(x.table(), y.table()))
    out["rejection_accepted"] = [one.n_accepted, many.n_accepted]
    out["rejection_devices_used"] = sorted(ran_on)

    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model, slots=16)
    out["runner_devices"] = len(run_kw["devices"] or [])
    used = set()
    real = trainer.run_epochs
    def spy(st, n):
        used.update(str(d) for d in st.epoch.devices())
        return real(st, n)
    trainer.run_epochs = spy
    ref = trainer.run(range(96), epochs_per_sync=8)
    used.clear()
    got = trainer.run(range(96), **run_kw)
    out["sgd_devices_used"] = sorted(used)
    out["sgd_records_equal"] = ref.records == got.records
    out["sgd_counts_equal"] = all(np.array_equal(a, b)
                                  for a, b in zip(ref.counter.table(), got.counter.table()))
    out["sgd_fitted"] = [ref.n_fitted, got.n_fitted]
    print("RESULT " + json.dumps(out))
""")


def test_two_devices_share_the_work_with_identical_counts():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["n_devices"] == 2 and out["runner_devices"] == 2
    assert out["rejection_equal"] and len(out["rejection_devices_used"]) == 2
    assert out["rejection_accepted"][0] == out["rejection_accepted"][1] > 0
    assert len(out["sgd_devices_used"]) == 2
    assert out["sgd_records_equal"] and out["sgd_counts_equal"]
    assert out["sgd_fitted"][0] == out["sgd_fitted"][1] > 0


COUNT = "import bayes_sgd.samplers, jax; print('N', len(jax.devices()))"


def _devices_after_import(**env_changes) -> int:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for k in ("XLA_FLAGS", "BAYES_SGD_CPU_DEVICES"):
        env.pop(k, None)
    env.update(env_changes)
    proc = subprocess.run([sys.executable, "-c", COUNT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split("N ")[-1])


def test_import_makes_one_cpu_device_per_usable_core():
    from bayes_sgd._cpu_devices import MAX_DEVICES

    cores = len(os.sched_getaffinity(0))
    assert _devices_after_import() == min(cores, MAX_DEVICES)
    assert _devices_after_import(BAYES_SGD_CPU_DEVICES="3") == 3
    assert _devices_after_import(BAYES_SGD_CPU_DEVICES="1") == 1
    # the user's XLA_FLAGS win
    assert _devices_after_import(
        XLA_FLAGS="--xla_force_host_platform_device_count=5") == 5


def test_bad_cpu_device_count_names_the_variable(monkeypatch):
    import pytest

    from bayes_sgd._cpu_devices import cpu_device_count

    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("BAYES_SGD_CPU_DEVICES", bad)
        with pytest.raises(ValueError, match="BAYES_SGD_CPU_DEVICES: expected a positive integer"):
            cpu_device_count()


def test_reading_results_does_not_import_jax():
    """``import bayes_sgd.results`` (and the package) stays light: no JAX, no device setup."""
    code = ("import sys, bayes_sgd, bayes_sgd.results, bayes_sgd.config, bayes_sgd.results_folder; "
            "print('JAX', 'jax' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("JAX ")[-1].strip() == "False"
