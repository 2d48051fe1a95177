"""Several JAX devices: rejection chunks and SGD slots spread over all of them, with the same
counts as one device, both with one executable per device (``spmd=False``) and with one
executable over a device mesh (``spmd=True``; the default for SGD).

XLA's host platform is split into 2 CPU devices (``--xla_force_host_platform_device_count``),
which must be set before JAX starts, so the check runs in a subprocess that prints JSON.  The
reference is the same work on one device in that process; counts are integers, so the
comparison is exact.  The subprocess also records which devices the work ran on, so the test
fails if everything stayed on device 0, and how many executables each path compiled (the
mesh path: one per function, the per-device path: one per device).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
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

    def cfg_for(train_size):
        return load_config(QUICK_CONFIG, ["task.n=5", "task.target=and3", f"task.train_size={train_size}",
                                          "model.widths=[8]", "samplers.sgd.max_epochs=300",
                                          "samplers.sgd.batch_size=4", "samplers.sgd.lr=0.003",
                                          "samplers.sgd.n_runs=96"])

    cfg = cfg_for(6)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    devs = jax.devices()
    out = {"n_devices": len(devs)}

    def same(x, y):
        return all(np.array_equal(a, b) for a, b in zip(x.table(), y.table()))

    part = sys.argv[1]
    # rejection: most chunks have fits, so the S executable gathers E ("gather"); E from the
    # second executable only ("on_e": the switch to gathering turned off); and the prior
    import bayes_sgd.samplers._rejection as rejection
    for name, size, prior in (("gather", 6, False), ("on_e", 6, False), ("prior", 6, True)):
        rejection.GATHER_IN_S_ABOVE = 2.0 if name == "on_e" else 0.3
        if part != "rejection":
            break
        t = build_task(cfg_for(size).task)
        layout = EvalLayout.for_task(t)
        kw = dict(chunk_size=256, n_samples=256 * 13 - 50, n_test=t.n_test,
                  n_table=len(layout.x) if prior else None)
        res = {}
        for path, run_kw in (("one", {}), ("per_device", dict(devices=devs, spmd=False)),
                             ("mesh", dict(devices=devs, spmd=True))):
            if prior and path == "per_device":  # (the mesh is compared with one device)
                continue
            fn = make_chunk_fn(model, layout, t.y_train, 256, prior)
            ran_on = set()
            for attr in ("collect", "collect_many"):
                real = getattr(fn, attr)
                def spy(handle, real=real):
                    for a in jax.tree_util.tree_leaves(handle[2]):
                        ran_on.update(str(d) for d in a.devices())
                    return real(handle)
                setattr(fn, attr, spy)
            # blocks of 5 chunks: the mesh's last call of a block has one chunk for 2 devices
            parts = [run_rejection_chunks(fn, stream_key(0, "rejection"),
                                          range(i, min(i + 5, 13)), **kw, **run_kw)
                     for i in range(0, 13, 5)]
            for p in parts[1:]:
                parts[0].merge(p)
            res[path] = parts[0]
            out[f"rej_{name}_{path}_devices"] = len(ran_on)
            out[f"rej_{name}_{path}_gather"] = fn.gather_size
            out[f"rej_{name}_{path}_executables"] = sum(  # S (or full) executables compiled
                f._cache_size() for f in (fn._full, fn._on_s, fn._on_s_gather,
                                          *fn._mesh(devs)[1:]))
        one = res["one"]
        for path in res.keys() - {"one"}:
            r = res[path]
            out[f"rej_{name}_{path}_equal"] = (
                same(one.posterior, r.posterior) and (not prior or same(one.prior, r.prior))
                and (one.n_samples, one.n_accepted, one.sum_accepted_sq)
                == (r.n_samples, r.n_accepted, r.sum_accepted_sq))
        out[f"rej_{name}_accepted"] = [one.n_accepted, one.n_samples]

    ref = None
    for path, spmd in () if part != "sgd" else (("one", None), ("per_device", False), ("mesh", True)):
        trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model, slots=16)
        out["runner_devices"] = len(run_kw["devices"] or [])
        out["runner_spmd"] = run_kw["spmd"]
        if path == "one":
            run_kw = dict(run_kw, devices=None)
        else:
            run_kw = dict(run_kw, spmd=spmd)
        res = trainer.run(range(96), **run_kw)
        if path == "one":
            ref = res
            out["sgd_fitted"] = ref.n_fitted
            continue
        if spmd:
            fns = trainer.mesh_fns(devs)
            out["sgd_mesh_executables"] = [f._cache_size() for f in fns[2:]]
            out["sgd_mesh_per_device_executables"] = trainer.run_epochs._cache_size()
            out["sgd_mesh_devices"] = len(fns.split.device_set)
        else:
            out["sgd_per_device_executables"] = trainer.run_epochs._cache_size()
        out[f"sgd_{path}_records_equal"] = ref.records == res.records
        out[f"sgd_{path}_counts_equal"] = same(ref.counter, res.counter)
    print("RESULT " + json.dumps(out))
""")


def _two_devices(part: str) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, part], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["n_devices"] == 2
    return out


def test_two_devices_rejection_identical_counts():
    out = _two_devices("rejection")
    for name in ("gather", "on_e", "prior"):
        accepted, n = out[f"rej_{name}_accepted"]
        assert 0 < accepted < n
        assert out[f"rej_{name}_one_devices"] == 1
        paths = ("per_device", "mesh") if name != "prior" else ("mesh",)
        for path in paths:
            assert out[f"rej_{name}_{path}_equal"], (name, path)
            assert out[f"rej_{name}_{path}_devices"] == 2, (name, path)
        # the mesh compiles each S (or full) executable once, the per-device path once per
        # device, one device once
        assert out[f"rej_{name}_mesh_executables"] == out[f"rej_{name}_one_executables"] >= 1
        if "per_device" in paths:
            assert out[f"rej_{name}_per_device_executables"] == 2 * out[
                f"rej_{name}_mesh_executables"]
    for path in ("one", "per_device", "mesh"):  # both ways of evaluating E were run
        assert out[f"rej_gather_{path}_gather"] > 0 and out[f"rej_on_e_{path}_gather"] == 0


@pytest.mark.slow  # ~60 s of the default suite: a fresh two-device process compiling both paths
def test_two_devices_sgd_identical_records_and_counts():
    out = _two_devices("sgd")
    assert out["runner_devices"] == 2
    assert out["runner_spmd"]  # 96 runs of a 5-8-1 net on |S| = 6: a short job (spmd_for)
    assert out["sgd_fitted"] > 0
    for path in ("per_device", "mesh"):
        assert out[f"sgd_{path}_records_equal"] and out[f"sgd_{path}_counts_equal"], path
    assert out["sgd_per_device_executables"] == 2  # one per device
    assert out["sgd_mesh_executables"] == [1, 1, 1]  # run_epochs, refill, harvest: one each
    assert out["sgd_mesh_per_device_executables"] == 0 and out["sgd_mesh_devices"] == 2


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


# The runner's mesh/per-device rule (spmd_for) against end-to-end times from the idle
# ``bench_startup.py --devices 2`` of 2026-12-02: compile (per-device, mesh) in s and steady-state
# rate (per-device, mesh) in runs/s, FCN 7-40-40-1 on the default config's S (32 inputs) at
# lr 0.1 (the default run) and lr 0.01 (the paper's).  Far from the crossover (4x either side)
# the rule must pick the path that is faster by compile + n_runs / rate.
MEASURED = {"lr 0.1": ((12.6, 7.8), (1013.1, 869.6)), "lr 0.01": ((10.7, 6.5), (149.8, 129.2))}


def test_forward_flops_closed_forms():
    """2 x multiply-adds: an FCN's weights; the paper's CNN (28x28 input, 32 channels, kernels
    5, 2, 5, 2, VALID/SAME) per output position, with either convolution implementation."""
    import dataclasses

    from bayes_sgd.models import CNN, FCN
    from bayes_sgd.samplers._sgd import forward_flops

    assert forward_flops(FCN(7, (40, 40)), (7,)) == 2 * (7 * 40 + 40 * 40 + 40)
    assert forward_flops(FCN(784, (512, 512)), (784,)) == 2 * (784 * 512 + 512 * 512 + 512)
    cnn = CNN.paper((28, 28, 1), filters=32)
    macs = (24 * 24 * 25 * 32 + 24 * 24 * 4 * 32 * 32 + 20 * 20 * 25 * 32 * 32
            + 20 * 20 * 4 * 32 * 32 + 20 * 20 * 32)
    for conv in ("im2col", "xla", "nhwc"):
        assert forward_flops(dataclasses.replace(cnn, conv=conv), (28, 28, 1)) == 2 * macs


def test_spmd_rule_picks_the_faster_path_far_from_the_measured_crossover():
    from bayes_sgd.samplers._sgd import spmd_for

    flops = 2 * (7 * 40 + 40 * 40 + 40)  # FCN 7-40-40-1
    for name, ((c_pd, c_mesh), (r_pd, r_mesh)) in MEASURED.items():
        crossover = (c_pd - c_mesh) / (1 / r_mesh - 1 / r_pd)
        for n_runs in (int(crossover / 4), int(crossover * 4)):
            mesh_faster = c_mesh + n_runs / r_mesh < c_pd + n_runs / r_pd
            assert spmd_for(n_runs, flops, 32) == mesh_faster, (name, n_runs, crossover)
    # the default run (10^4 runs at lr 0.1: measured 19.3 s on the mesh vs 22.5 s per device)
    # on the mesh; 10^5-run paper figures, and one MNIST run (|S| = 1,000) of the FCN
    # 784-512-512-1 or of the paper's CNN, per device
    assert spmd_for(10_000, flops, 32)
    assert not spmd_for(100_000, flops, 32)
    assert not spmd_for(1, 2 * (784 * 512 + 512 * 512 + 512), 1000)
    assert not spmd_for(1, 29_422_592, 1000)
