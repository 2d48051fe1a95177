"""SGD runs to 100 % training accuracy: the package vs a one-network-at-a-time PyTorch loop.

    .venv/bin/python benchmarks/bench_sgd.py [--lr 0.01] [--runs 2048] [--torch-runs 20]
        [--device cpu|gpu]

Setting: n = 7, target and4, |S| = 32 (train_seed 0), FCN 7-40-40-1 ReLU, sigma_w = sigma_b = 1,
plain SGD, batch 8 (4 steps per epoch), BCE, minibatches reshuffled every epoch, 100 % training
accuracy checked at every epoch boundary, ``max_epochs`` 2000.  The package path is the
runner's (``SGDTrainer.run`` with the settings ``bayes_sgd.experiment`` uses: automatic slot
count, ``EPOCHS_PER_SYNC``) over ``--runs`` run ids, timed from the first run queued to the
last one finished (the tail of the slowest runs included; the compile is not timed).  The
baseline is ``_baselines.torch_sgd_loop`` (torch, one network at a time), time-boxed to
``--torch-runs`` runs, run before and after the package so that both halves see the same
machine load.  Checks: the ratio of runs/s against the floor of 100x, and that 10^5 runs would
finish within 30 minutes (runs/s x 1800 >= 10^5).

``--compare-grad [--runs 2000] [--rounds 2]``: the paper setting instead (``paper_targets_n7``,
target 4, lr 0.01, the runner's choices for 10^5 runs: 32 slots per device, one executable per
device), the training step with the FCN's ``train_apply`` (weight gradients as unrolled sums of
per-row outer products) against ``apply`` (XLA's batched dot, the code before), both over the
same run ids in the same process, in the order old-new-new-old per round.  Prints each side's
runs/s and their ratio per round (floor 1.5x), and how many of the runs' records (fit epoch,
epochs, fitted) and whether the function counts are identical (the two gradients differ by
float rounding, ~1 ulp).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _baselines import (QUICK_CONFIG, banner, check_jax_platform, select_jax_platform,  # noqa: E402
                        torch_device, torch_sgd_loop, verdict)

FLOOR = 100.0
PAPER_CONFIG = str(Path(__file__).resolve().parent.parent / "experiments" / "paper_targets_n7.toml")
TARGET_RUNS, TARGET_SECONDS = 100_000, 1800.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--runs", type=int, default=2048, help="package runs (timed)")
    ap.add_argument("--torch-runs", type=int, default=20, help="torch runs (time-boxed)")
    ap.add_argument("--torch-seconds", type=float, default=90.0,
                    help="time box of each torch half (finishes the run in progress)")
    ap.add_argument("--max-epochs", type=int, default=2000)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="JAX backend and torch device (gpu: CUDA; fails if none)")
    ap.add_argument("--compare-grad", action="store_true",
                    help="paper setting: train_apply vs apply in the training step (no torch)")
    ap.add_argument("--rounds", type=int, default=2, help="--compare-grad rounds")
    args = ap.parse_args(argv)
    if args.compare_grad:
        return compare_grad(args)
    try:
        device = torch_device(args.device)
    except ImportError:
        print("torch is not installed: pip install -e '.[bench]'")
        return 2
    select_jax_platform(args.device)
    check_jax_platform(args.device)

    import jax

    from bayes_sgd.config import load_config
    from bayes_sgd.samplers import sgd_trainer_and_run_kwargs
    from bayes_sgd.models import build_model
    from bayes_sgd.tasks import build_task

    cfg = load_config(QUICK_CONFIG, [
        "task.train_size=32", f"samplers.sgd.lr={args.lr}", f"samplers.sgd.n_runs={args.runs}",
        "samplers.sgd.batch_size=8", "samplers.sgd.optimizer=sgd", "samplers.sgd.loss=bce",
        f"samplers.sgd.max_epochs={args.max_epochs}"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
    try:
        import torch
        torch_desc = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        print("torch is not installed: pip install -e '.[bench]'")
        return 2
    sc = cfg.samplers.sgd
    banner("SGD runs to 100 % train accuracy", {
        "task": f"n={cfg.task.n}, target={cfg.task.target}, |S|={task.m}, |E|={task.n_test}",
        "model": f"FCN {model.in_dim}-{'-'.join(map(str, model.widths))}-1 {model.activation}, "
                 f"sigma_w={model.sigma_w}, sigma_b={model.sigma_b}",
        "training": f"{sc.optimizer} lr={sc.lr}, batch {sc.batch_size}, {sc.loss}, "
                    f"max_epochs {sc.max_epochs}, reshuffled each epoch, fit checked each epoch",
        "package": f"SGDTrainer.run, {args.runs} runs, {trainer.P} slots, "
                   f"{run_kw['epochs_per_sync'] or 'adaptive'} epochs per sync, jax {jax.__version__} on "
                   f"{jax.devices()}",
        "baseline": f"{torch_desc}, one network at a time, up to {args.torch_runs} runs "
                    f"({args.torch_runs // 2} before and {args.torch_runs - args.torch_runs // 2} "
                    "after the package)",
    })
    t0 = time.perf_counter()
    # compile (other run ids): one executable over the device mesh (spmd=False: one per
    # device, and the first fill gives each device P runs, so the warm-up has runs on the last
    # device too)
    n_dev = len(run_kw["devices"] or [None])
    n_warm = trainer.P * (n_dev - 1) + 2
    trainer.run(range(args.runs, args.runs + n_warm), **run_kw)
    print(f"compile + {n_warm} runs: {time.perf_counter() - t0:.1f} s")

    torch_kw = dict(lr=sc.lr, batch_size=sc.batch_size, widths=model.widths,
                    sigma_w=model.sigma_w, sigma_b=model.sigma_b, max_epochs=sc.max_epochs,
                    max_seconds=args.torch_seconds, device=device)
    first = torch_sgd_loop(task.x_train, task.y_train, max_runs=args.torch_runs // 2, seed=1,
                           **torch_kw)
    t0 = time.perf_counter()
    res = trainer.run(range(args.runs), **run_kw)
    pkg_s = time.perf_counter() - t0
    second = torch_sgd_loop(task.x_train, task.y_train,
                            max_runs=args.torch_runs - args.torch_runs // 2, seed=2, **torch_kw)

    pkg_rate = args.runs / pkg_s
    t_runs = first.n_runs + second.n_runs
    t_rate = t_runs / (first.seconds + second.seconds)
    fit_ep = [v[1] for v in res.records.values() if v[0]]
    t_ep = [e for e, f in zip(first.epochs + second.epochs, first.fitted + second.fitted) if f]
    print(f"package : {pkg_rate:>8.1f} runs/s  ({args.runs} runs in {pkg_s:.1f} s; "
          f"{res.n_fitted} fitted, median {np.median(fit_ep):.0f} epochs to fit)")
    print(f"baseline: {t_rate:>8.2f} runs/s  ({t_runs} runs in "
          f"{first.seconds + second.seconds:.1f} s; {sum(first.fitted + second.fitted)} fitted, "
          f"median {np.median(t_ep) if t_ep else float('nan'):.0f} epochs to fit)")
    ok = verdict(f"SGD lr={sc.lr}", pkg_rate / t_rate, FLOOR)
    projected = TARGET_RUNS / pkg_rate
    ok_time = pkg_rate * TARGET_SECONDS >= TARGET_RUNS
    print(f"10^5 runs at {pkg_rate:.1f} runs/s: {projected / 60:.1f} min (limit 30 min; needs >= "
          f"{TARGET_RUNS / TARGET_SECONDS:.1f} runs/s) -> {'PASS' if ok_time else 'FAIL'}")
    if os.environ.get("BENCH_CPU"):
        print(f"(load average now {os.getloadavg()[0]:.1f})")
    return 0 if ok and ok_time else 1


GRAD_FLOOR = 1.5


def compare_grad(args) -> int:
    """``--compare-grad``: see the module docstring."""
    select_jax_platform(args.device)
    check_jax_platform(args.device)
    import jax

    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import SGDTrainer, sgd_trainer_and_run_kwargs
    from bayes_sgd.tasks import build_task

    # the runner's choices for a 10^5-run job (slots, cadence, per-device executables)
    cfg = load_config(PAPER_CONFIG, ["samplers.sgd.n_runs=100000"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    new, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
    old = SGDTrainer(model, task, new.s, stream=new.stream, train_apply=False)
    old.P = new.P
    sc = cfg.samplers.sgd
    banner("SGD training step: train_apply vs apply, paper setting", {
        "task": f"n={cfg.task.n}, paper target 4, |S|={task.m}, |E|={task.n_test}",
        "model": f"FCN {model.in_dim}-{'-'.join(map(str, model.widths))}-1 {model.activation}",
        "training": f"{sc.optimizer} lr={sc.lr}, batch {sc.batch_size}, {sc.loss}, "
                    f"max_epochs {sc.max_epochs}",
        "runs": f"{args.runs} run ids x {args.rounds} rounds (old-new-new-old), {new.P} slots per "
                f"device, {len(run_kw['devices'] or [None])} devices, spmd={run_kw['spmd']}, "
                f"jax {jax.__version__}",
    })
    for tr in (old, new):  # compile (other run ids)
        t0 = time.perf_counter()
        tr.run(range(10**9, 10**9 + 2 * tr.P + 2), **run_kw)
        print(f"compile + warm-up ({'new' if tr is new else 'old'}): "
              f"{time.perf_counter() - t0:.1f} s")
    ids = range(args.runs)
    ratios, res = [], {}
    for r in range(args.rounds):
        secs = {}
        for name, tr in (("old", old), ("new", new), ("new", new), ("old", old)):
            t0 = time.perf_counter()
            res[name] = tr.run(ids, **run_kw)
            secs[name] = secs.get(name, 0.0) + time.perf_counter() - t0
        ratios.append(secs["old"] / secs["new"])
        print(f"round {r + 1}: old {2 * args.runs / secs['old']:.1f} runs/s, new "
              f"{2 * args.runs / secs['new']:.1f} runs/s, ratio {ratios[-1]:.2f}x")
    ro, rn = res["old"], res["new"]
    same = sum(ro.records[i] == rn.records[i] for i in ids)
    co, cn = ro.counter.to_dict(), rn.counter.to_dict()
    top = sorted(co, key=lambda f: -co[f])[:8]
    print(f"records identical for {same}/{args.runs} runs; function counts identical: {co == cn} "
          f"({len(co)} vs {len(cn)} functions; top 8 old {[co[f] for f in top]}, new "
          f"{[cn.get(f, 0) for f in top]})")
    print(f"ratio per round: {', '.join(f'{r:.2f}x' for r in ratios)}; median "
          f"{np.median(ratios):.2f}x")
    ok = verdict("train_apply vs apply", float(np.median(ratios)), GRAD_FLOOR)
    if os.environ.get("BENCH_CPU"):
        print(f"(load average now {os.getloadavg()[0]:.1f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
