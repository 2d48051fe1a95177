"""Memory of SGD training slots: the estimate (``slot_bytes``) against a measurement.

    python benchmarks/bench_slot_memory.py [--slots 32] [--device cpu|gpu]

MNIST FCN 784-512-512-1, Adam, batch 32, |S| = 1,000 (the image benchmark's setting).  The
estimate per slot is ``bayes_sgd.samplers._sgd.slot_bytes``: float32 parameters x 4
(parameters, gradient, update, the kept copy) + Adam's state (mu, nu) x 2, plus every
intermediate value of one forward pass for max(3 x batch, fit chunk, |E|) rows.  Measured:
on CPU the growth of the process's peak resident memory (VmHWM) from before the slots exist
to after one training epoch of all of them (one device); on GPU the device's
``peak_bytes_in_use``.  Prints both and their ratio, and the estimate for 10^4 slots.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = ap.parse_args(argv)
    os.environ.setdefault("BAYES_SGD_CPU_DEVICES", "1")
    from _baselines import QUICK_CONFIG, check_jax_platform, select_jax_platform
    from bench_sgd_images import BASE, model_overrides

    select_jax_platform(args.device)
    dev = check_jax_platform(args.device)[0]
    import jax
    import numpy as np

    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import SGDSettings, SGDTrainer, stream_key
    from bayes_sgd.tasks import build_task

    cfg = load_config(QUICK_CONFIG, BASE + model_overrides("fcn", 0) + [
        "task.train_size=1000", "samplers.sgd.n_runs=1000000", "samplers.sgd.max_epochs=1"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    s = SGDSettings.from_config(cfg.samplers.sgd)
    s.slots = args.slots
    tr = SGDTrainer(model, task, s, stream=stream_key(0, "sgd"))
    p1 = model.n_params
    est = tr.slot_bytes
    print(f"FCN 784-512-512-1: {p1:,} parameters; estimate per slot {est / 2**20:.1f} MiB = 4 B x "
          f"(4 x {p1:,} + 2 x {2 * p1 + 1:,} Adam state + rows x activations)")
    print(f"  parameters, gradient, update, kept copy and Adam's mu, nu alone: "
          f"{4 * 6 * p1 / 2**20:.1f} MiB per slot")
    # compile on a 1-slot trainer first, so the compiler's own memory is not counted
    s1 = SGDSettings.from_config(cfg.samplers.sgd)
    s1.slots = 1
    t1 = SGDTrainer(model, task, s1, stream=stream_key(0, "sgd"))
    st1 = t1.refill(jax.device_put(t1.empty_state(), dev), np.ones(1, bool), np.arange(1, dtype=np.int32))
    jax.block_until_ready(t1.run_epochs(st1, np.int32(1)))
    del st1
    base = vm_hwm()
    if args.device == "gpu":
        base_gpu = dev.memory_stats().get("peak_bytes_in_use", 0)
    P = args.slots
    t0 = time.perf_counter()
    st = tr.refill(jax.device_put(tr.empty_state(), dev), np.ones(P, bool), np.arange(P, dtype=np.int32))
    st = tr.run_epochs(st, np.int32(1))
    jax.block_until_ready(st)
    dt = time.perf_counter() - t0
    if args.device == "gpu":
        used = dev.memory_stats().get("peak_bytes_in_use", 0) - base_gpu
        what = "GPU peak_bytes_in_use growth"
    else:
        used = vm_hwm() - base
        what = "VmHWM growth"
    print(f"{P} slots: measured {what} {used / 2**20:.0f} MiB ({used / P / 2**20:.1f} MiB per "
          f"slot), estimate {P * est / 2**20:.0f} MiB: measured / estimate = {used / (P * est):.2f}"
          f" (compile of the {P}-slot executable included; one epoch {dt:.1f} s)")
    print(f"estimate for 10^4 slots: {1e4 * est / 1e9:.0f} GB "
          f"({1e4 * 4 * 6 * p1 / 1e9:.0f} GB of parameters, gradients and Adam state)")
    print(f"slots within 141 GB (H200) by the estimate: {int(141e9 // est):,}; within 80 GB: "
          f"{int(80e9 // est):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
