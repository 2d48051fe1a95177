"""Start-up (compile) and steady-state throughput of SGD and rejection: one executable over a
device mesh (SPMD, ``spmd=True``) vs one executable per device (``spmd=False``) vs one device.

    .venv/bin/python benchmarks/bench_startup.py [--devices 2] [--rounds 2]
        [--quick-runs 10000] [--paper-runs 2048] [--chunks 64]

Settings: n = 7, FCN 7-40-40-1 ReLU, sigma_w = sigma_b = 1, and4, plain SGD, batch 8, BCE.
SGD "quick": the package's default experiment's S and lr (``boolean_n7``: its ``train_mask``,
32 inputs, lr 0.1, 10^4 runs; until 2026-12-02 this said |S| = 16: a ``task.train_size``
override was silently ignored when the config sets a mask, now an error unless it equals the
mask's count); SGD "paper": the same S, lr 0.01
(``--paper-runs`` runs).  Rejection: |S| = 32, the automatic
chunk size, blocks of 8 chunks (as the runner).  Every path gets its own trainer or chunk
function (fresh executables, nothing cached between paths).

* compile: each path's executables compiled and run once on empty slots (SGD: refill, one
  epoch, harvest; rejection: ``RejectionChunkFn.warm``): per device for the per-device path,
  once over the mesh for SPMD.
* throughput: the runner's settings (``sgd_trainer_and_run_kwargs``, ``run_rejection_chunks``),
  the paths alternating in ``--rounds`` rounds on the SAME run ids / chunk ids, so that they
  see the same machine load; the benchmark fails if their records or counts differ.
Wall and CPU seconds (``time.process_time``, all threads) are both reported: on a shared
machine the CPU seconds of the compile are the steadier measure.  Ratios are SPMD over per-device (compile: per-device / SPMD seconds, > 1 = SPMD compiles
faster; throughput: SPMD / per-device rate, > 1 = SPMD faster).  ``--devices`` sets
``BAYES_SGD_CPU_DEVICES`` (default: the package's one device per core).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baselines import banner  # noqa: E402

PATHS = ("1 device", "per-device", "SPMD")


def sgd_warm(trainer, path, devs) -> tuple[float, float]:
    """(wall, CPU) seconds to compile (and run once, on idle slots) the SGD executables of
    ``path``."""
    c0 = time.process_time()
    if path == "1 device":
        wall = trainer.warm(devs[:1], spmd=False)
    else:
        wall = trainer.warm(devs, spmd=path == "SPMD")
    return wall, time.process_time() - c0


def run_kw_for(path, run_kw, devs):
    if path == "1 device":
        return dict(run_kw, devices=[devs[0]], spmd=False)
    return dict(run_kw, devices=devs, spmd=path == "SPMD")


def bench_sgd(name, overrides, n_runs, rounds, devs) -> dict:
    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import sgd_trainer_and_run_kwargs
    from bayes_sgd.samplers._sgd import forward_flops
    from bayes_sgd.tasks import build_task

    cfg = load_config(None, overrides + [f"samplers.sgd.n_runs={n_runs}"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainers, compile_s, compile_cpu = {}, {}, {}
    for path in PATHS:
        trainers[path], run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
        compile_s[path], compile_cpu[path] = sgd_warm(trainers[path], path, devs)
    P = trainers["SPMD"].P
    secs, cpu = dict.fromkeys(PATHS, 0.0), dict.fromkeys(PATHS, 0.0)
    fitted = 0
    for r in range(rounds):
        ids = range(10**6 + r * n_runs, 10**6 + (r + 1) * n_runs)
        ref = None
        for path in PATHS[r % 3:] + PATHS[:r % 3]:  # rotate who goes first
            t0, c0 = time.perf_counter(), time.process_time()
            res = trainers[path].run(ids, **run_kw_for(path, run_kw, devs))
            secs[path] += time.perf_counter() - t0
            cpu[path] += time.process_time() - c0
            if ref is None:
                ref = res
                fitted += res.n_fitted
            elif res.records != ref.records or any(
                    (a != b).any() for a, b in zip(res.counter.table(), ref.counter.table())):
                raise SystemExit(f"SGD {name}: {path} records or counts differ")
    rate = {p: rounds * n_runs / secs[p] for p in PATHS}
    print(f"\nSGD {name} ({', '.join(overrides)}; {P} slots per device, {rounds} x {n_runs} "
          f"runs per path, {fitted} fitted; records and counts identical on all paths)")
    for p in PATHS:
        print(f"  {p:<10}: compile {compile_s[p]:5.1f} s ({compile_cpu[p]:5.1f} CPU s), "
              f"{rate[p]:7.1f} runs/s ({rounds * n_runs / cpu[p]:7.1f} per CPU s), "
              f"compile + {n_runs} runs {compile_s[p] + n_runs / rate[p]:5.1f} s")
    return {"compile": compile_s, "rate": rate, "n": n_runs, "compile_cpu": compile_cpu,
            "cpu_rate": {p: rounds * n_runs / cpu[p] for p in PATHS},
            "work_per_run": forward_flops(model, task.input_shape) * task.m}


def bench_rejection(n_chunks, rounds, devs) -> dict:
    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import (EvalLayout, make_chunk_fn, rejection_chunk_size,
                                    run_rejection_chunks, stream_key)
    from bayes_sgd.tasks import build_task

    cfg = load_config(None, ["task.train_size=32"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    chunk = rejection_chunk_size(model, len(layout.x), 1)
    fns, compile_s, compile_cpu = {}, {}, {}
    for path in PATHS:
        fns[path] = make_chunk_fn(model, layout, task.y_train, chunk, False)
        t0, c0 = time.perf_counter(), time.process_time()
        fns[path].warm(devs if path != "1 device" else devs[:1], spmd=path == "SPMD")
        compile_s[path] = time.perf_counter() - t0
        compile_cpu[path] = time.process_time() - c0
    stream = stream_key(cfg.seed, "rejection")
    kw = dict(chunk_size=chunk, n_samples=1 << 60, n_test=task.n_test, n_table=None)
    secs, cpu = dict.fromkeys(PATHS, 0.0), dict.fromkeys(PATHS, 0.0)
    accepted = 0
    for r in range(rounds):
        first = r * n_chunks
        ref = None
        for path in PATHS[r % 3:] + PATHS[:r % 3]:
            devices = devs[:1] if path == "1 device" else devs
            t0, c0 = time.perf_counter(), time.process_time()
            parts = [run_rejection_chunks(fns[path], stream, range(c, c + 8), devices=devices,
                                          spmd=path == "SPMD", **kw)
                     for c in range(first, first + n_chunks, 8)]
            secs[path] += time.perf_counter() - t0
            cpu[path] += time.process_time() - c0
            res = parts[0]
            for p in parts[1:]:
                res.merge(p)
            if ref is None:
                ref = res
                accepted += res.n_accepted
            elif res.n_accepted != ref.n_accepted or any(
                    (a != b).any() for a, b in zip(res.posterior.table(), ref.posterior.table())):
                raise SystemExit(f"rejection: {path} counts differ")
    rate = {p: rounds * n_chunks * chunk / secs[p] for p in PATHS}
    print(f"\nrejection (|S| = 32, chunk {chunk}, {rounds} x {n_chunks} chunks per path, "
          f"{accepted} accepted; counts identical on all paths)")
    cpu_rate = {p: rounds * n_chunks * chunk / cpu[p] for p in PATHS}
    for p in PATHS:
        print(f"  {p:<10}: compile {compile_s[p]:5.1f} s ({compile_cpu[p]:5.1f} CPU s), "
              f"{rate[p] / 1e3:7.1f} k networks/s ({cpu_rate[p] / 1e3:7.1f} k per CPU s)")
    return {"compile": compile_s, "rate": rate, "compile_cpu": compile_cpu, "cpu_rate": cpu_rate}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=0,
                    help="CPU devices (BAYES_SGD_CPU_DEVICES; 0 = one per core)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick-runs", type=int, default=10_000)
    ap.add_argument("--paper-runs", type=int, default=2048)
    ap.add_argument("--chunks", type=int, default=64, help="rejection chunks per round (x8)")
    ap.add_argument("--only", choices=("quick", "paper", "rejection"), action="append")
    args = ap.parse_args(argv)
    if args.devices:
        os.environ["BAYES_SGD_CPU_DEVICES"] = str(args.devices)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bayes_sgd.samplers  # noqa: F401  (one CPU device per core, before JAX starts)
    import jax

    from bayes_sgd.samplers._sgd import SPMD_MAX_WORK

    devs = jax.devices()
    if len(devs) < 2:
        print(f"needs 2 or more devices, got {devs} (try --devices 2)")
        return 2
    banner("start-up and throughput: SPMD mesh vs per-device executables", {
        "devices": f"{len(devs)} x {devs[0].platform}, jax {jax.__version__}",
        "paths": "1 device (per-device code on device 0); per-device (spmd=False, one "
                 "executable per device); SPMD (spmd=True, one executable over the mesh)",
        "timing": f"{args.rounds} rounds, paths alternating on the same ids",
    })
    only = set(args.only or ("quick", "paper", "rejection"))
    out = {}
    base = ["task.n=7", "task.target=and4", "samplers.sgd.batch_size=8",
            "samplers.sgd.optimizer=sgd", "samplers.sgd.loss=bce", "samplers.sgd.max_epochs=2000"]
    if "quick" in only:
        out["SGD quick"] = bench_sgd("quick", base + ["samplers.sgd.lr=0.1"],
                                     args.quick_runs, args.rounds, devs)
    if "paper" in only:
        out["SGD paper"] = bench_sgd("paper", base + ["samplers.sgd.lr=0.01"],
                                     args.paper_runs, args.rounds, devs)
    if "rejection" in only:
        out["rejection"] = bench_rejection(args.chunks, args.rounds, devs)
    print("\nratios (SPMD vs per-device; and vs 1 device)")
    for name, o in out.items():
        c, r = o["compile"], o["rate"]
        print(f"  {name:<10}: compile per-device/SPMD {c['per-device'] / c['SPMD']:4.2f}x "
              f"({c['per-device']:.1f} -> {c['SPMD']:.1f} s; 1 device {c['1 device']:.1f} s); "
              f"throughput SPMD/per-device {r['SPMD'] / r['per-device']:4.2f}x, "
              f"SPMD/1 device {r['SPMD'] / r['1 device']:4.2f}x, "
              f"per-device/1 device {r['per-device'] / r['1 device']:4.2f}x")
        cc, cr = o["compile_cpu"], o["cpu_rate"]
        print(f"  {'':<10}  CPU time: compile per-device/SPMD {cc['per-device'] / cc['SPMD']:4.2f}x "
              f"({cc['per-device']:.1f} -> {cc['SPMD']:.1f} CPU s); work per CPU s SPMD/per-device "
              f"{cr['SPMD'] / cr['per-device']:4.2f}x")
        if "n" in o:
            tot = {p: c[p] + o["n"] / r[p] for p in PATHS}
            print(f"  {'':<10}  compile + {o['n']} runs: per-device {tot['per-device']:.1f} s, "
                  f"SPMD {tot['SPMD']:.1f} s ({tot['per-device'] / tot['SPMD']:.2f}x)")
            # where compile + n / rate is equal on both paths (the runner's rule: spmd_for)
            dc = c["per-device"] - c["SPMD"]
            dt = 1 / r["SPMD"] - 1 / r["per-device"]
            if dc > 0 and dt > 0:
                n_x = dc / dt
                print(f"  {'':<10}  crossover: SPMD faster end to end below {n_x:,.0f} runs "
                      f"({n_x / r['per-device']:.1f} s of per-device training; work n_runs x "
                      f"|S| x forward FLOPs = {n_x * o['work_per_run']:.2e}, spmd_for's threshold "
                      f"{SPMD_MAX_WORK:.2e})")
            else:
                print(f"  {'':<10}  crossover: none (SPMD {'faster' if dt <= 0 else 'slower'} "
                      f"in steady state, compiles {'faster' if dc > 0 else 'slower'})")
    print(f"(load average now {os.getloadavg()[0]:.1f}; the machine is shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
