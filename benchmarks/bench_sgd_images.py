"""Image SGD: the package's vmapped trainer vs a one-network-at-a-time PyTorch loop.

    python benchmarks/bench_sgd_images.py [--models fcn,cnn] [--device cpu|gpu]
        [--fcn-runs 16] [--cnn-runs 8] [--cnn-max-epochs 1] [--torch-runs 4] [--slots 0]
        [--cnn-conv auto|im2col|xla]
        [--spmd auto|mesh|per-device]

Setting (issue 14, item 3): binarised MNIST (label >= 5 -> 1; the test split of
``$BAYES_SGD_MNIST_DIR``, pixels / 255), |S| = 1,000 (train_seed 0), |E| = 100; Adam lr 1e-3,
batch 32, BCE with logits, minibatches reshuffled every epoch, 100 % training accuracy checked
at every epoch boundary (all of S), sigma_w = 1, sigma_b = 0.0357, ReLU.
  * FCN 784-512-512-1, trained to 100 % train accuracy (``--fcn-max-epochs`` cap).
  * CNN, the paper's layout (experiments/paper_images_cnn.toml): 4 conv layers, kernels
    5, 2, 5, 2, padding VALID, SAME, VALID, SAME, stride 1, no pooling, linear readout, with
    ``--channels`` (32) per layer.  A CNN epoch costs ~10^11 FLOP here, so by default every
    run is capped at ``--cnn-max-epochs`` (1) epochs and the ratio is per network-epoch;
    ``--cnn-max-epochs 100`` trains to fit (long: minutes per torch run on this CPU).

The package path is ``SGDTrainer.run`` with the runner's settings
(``sgd_trainer_and_run_kwargs``: every JAX device, automatic slots unless ``--slots``),
timed from the first run queued to the last finished, compile excluded (one idle epoch per
device first).  The baseline (``_baselines.torch_image_loop``) trains one network at a time
with torch's fastest thread count on this machine (``--torch-threads 0`` times one epoch at
1 thread and at torch's default and keeps the faster: a stricter baseline on a shared
machine, where OpenMP threads that spin-wait lose to other processes); it runs before and
after the package so both halves see the same load.

Reported per model: useful network-epochs/s (epochs of the runs, not of idle slots, over
wall time: the package's idle-slot work and its tail count against it), runs to 100 % train
accuracy per second, and epochs to fit on each side (a cross-check that both train the same
model: they should agree within run-to-run spread).  The ratio checked against the floor
(FCN >= 3x, CNN >= 1.5x) is the network-epoch rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

FLOORS = {"fcn": 3.0, "cnn": 1.5}
BASE = ["task.kind=image", "task.dataset=mnist", "task.split=test", "task.binarize=threshold:5",
        "task.test_size=100", "task.train_seed=0", "task.scale=unit",
        "model.activation=relu", "model.sigma_w=1.0", "model.sigma_b=0.0357",
        "samplers.rejection.enabled=false", "samplers.sgd.optimizer=adam",
        "samplers.sgd.lr=0.001", "samplers.sgd.batch_size=32", "samplers.sgd.loss=bce",
        "samplers.sgd.epochs_after_fit=0"]


def model_overrides(name: str, channels: int) -> list[str]:
    if name == "fcn":
        return ["model.arch=fcn", "model.widths=[512,512]"]
    c = channels
    return ["model.arch=cnn", f"model.filters=[{c},{c},{c},{c}]", "model.kernel_sizes=[5,2,5,2]",
            "model.strides=[1,1,1,1]", 'model.padding=["VALID","SAME","VALID","SAME"]',
            'model.pooling="none"', "model.dense_widths=[]"]


def conv_desc(trainer) -> str:
    conv = trainer.model.conv
    if conv == "auto":
        from bayes_sgd.models._cnn import conv_impl
        conv = conv_impl()
    return conv + (" (XLA's own, compiled without YNNPACK's convolutions)"
                   if trainer._jit_options else "")


def warm_up(trainer, run_kw) -> float:
    """Compile the executables the run uses (one epoch of idle slots): ``SGDTrainer.warm``
    with the run's devices and path (mesh or per device, ``spmd_for``)."""
    return trainer.warm(run_kw["devices"], spmd=run_kw.get("spmd"))


def torch_threads_for(model, task, args, device) -> tuple[int, str]:
    """The faster of 1 thread and torch's default (one capped epoch each), unless given."""
    import torch

    from _baselines import torch_image_loop

    default = torch.get_num_threads()
    if args.torch_threads or device.type != "cpu" or default == 1:
        n = args.torch_threads or default
        torch.set_num_threads(n)
        return n, f"{n} threads (given)" if args.torch_threads else f"{n} threads"
    # one untimed epoch first: the first epoch in the process pays torch's one-off start-up
    # (allocator, oneDNN kernels), which would count against whichever count went first
    torch_image_loop(model, task.x_train, task.y_train, max_epochs=1, max_runs=1,
                     device=device, seed=98)
    times = {}
    for n in sorted({1, default}):
        torch.set_num_threads(n)
        r = torch_image_loop(model, task.x_train, task.y_train, max_epochs=1, max_runs=1,
                             device=device, seed=99)
        times[n] = r.seconds / max(r.network_epochs, 1)
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return best, (f"{best} thread(s), the faster of " + ", ".join(
        f"{n}: {t:.2f} s/epoch" for n, t in times.items()))


def bench_model(name: str, args, device) -> bool:
    import jax

    from _baselines import QUICK_CONFIG, banner, torch_image_loop, verdict
    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import sgd_trainer_and_run_kwargs
    from bayes_sgd.tasks import build_task

    runs = args.fcn_runs if name == "fcn" else args.cnn_runs
    max_epochs = args.fcn_max_epochs if name == "fcn" else args.cnn_max_epochs
    cfg = load_config(QUICK_CONFIG, BASE + model_overrides(name, args.channels) + [
        f"task.train_size={args.train_size}", f"samplers.sgd.n_runs={runs}",
        f"samplers.sgd.max_epochs={max_epochs}"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    if name == "cnn" and args.cnn_conv != "auto":
        model = dataclasses.replace(model, conv=args.cnn_conv)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model, slots=args.slots or None)
    if args.spmd != "auto" and run_kw["devices"]:
        run_kw["spmd"] = args.spmd == "mesh"
    n_threads, threads_desc = torch_threads_for(model, task, args, device)
    import torch

    desc = (f"FCN {model.in_dim}-{'-'.join(map(str, model.widths))}-1" if name == "fcn" else
            f"CNN {len(model.filters)} conv x {model.filters[0]} channels, kernels "
            f"{[k[0] for k in model.kernel_sizes]}, {list(model.padding)}, readout "
            f"{model.readout_dim}->1, convolutions {conv_desc(trainer)}")
    banner(f"image SGD, {name.upper()}", {
        "task": f"MNIST {cfg.task.split} split, {cfg.task.binarize}, |S|={task.m}, "
                f"|E|={task.n_test}",
        "model": f"{desc}, {model.n_params:,} parameters, ReLU, sigma_w={model.sigma_w}, "
                 f"sigma_b={model.sigma_b}",
        "training": "adam lr 1e-3, batch 32, BCE, reshuffled each epoch, fit checked each "
                    f"epoch, max_epochs {max_epochs}",
        "package": f"SGDTrainer.run, {runs} runs, {trainer.P} slots x "
                   f"{len(run_kw['devices'] or [None])} device(s) {jax.devices()} "
                   f"({'one executable over the mesh' if run_kw.get('spmd') else 'one executable per device'}), "
                   f"jax {jax.__version__}",
        "baseline": f"torch {torch.__version__} on {device}, one network at a time, "
                    f"{threads_desc}; up to {args.torch_runs} runs in two halves",
    })
    print(f"compile (+ one idle epoch): {warm_up(trainer, run_kw):.1f} s",
          flush=True)
    t_kw = dict(lr=cfg.samplers.sgd.lr, batch_size=cfg.samplers.sgd.batch_size,
                max_epochs=max_epochs, max_seconds=args.torch_seconds, device=device)
    half = max(1, args.torch_runs // 2)
    first = torch_image_loop(model, task.x_train, task.y_train, max_runs=half, seed=1, **t_kw)
    t0 = time.perf_counter()
    res = trainer.run(range(runs), **run_kw)
    pkg_s = time.perf_counter() - t0
    second = torch_image_loop(model, task.x_train, task.y_train,
                              max_runs=max(1, args.torch_runs - half), seed=2, **t_kw)

    recs = list(res.records.values())  # (fitted, fit epoch, epochs trained, diverged)
    p_ep = sum(r[2] for r in recs)
    p_fit = [r[1] for r in recs if r[0]]
    t_s = first.seconds + second.seconds
    t_ep = first.network_epochs + second.network_epochs
    t_fit = [e for e in first.fit_epochs + second.fit_epochs if e >= 0]
    t_runs = first.n_runs + second.n_runs

    def spread(v):
        return (f"epochs to fit min/median/max {min(v)}/{np.median(v):g}/{max(v)}" if v
                else "none fitted")

    print(f"package : {p_ep / pkg_s:8.3f} network-epochs/s, {len(p_fit) / pkg_s:7.3f} fitted "
          f"runs/s ({runs} runs, {p_ep} network-epochs in {pkg_s:.1f} s; {len(p_fit)} fitted, "
          f"{spread(p_fit)})")
    print(f"baseline: {t_ep / t_s:8.3f} network-epochs/s, {len(t_fit) / t_s:7.3f} fitted "
          f"runs/s ({t_runs} runs, {t_ep} network-epochs in {t_s:.1f} s; {len(t_fit)} fitted, "
          f"{spread(t_fit)})")
    print(f"per network-epoch: package {1e3 * pkg_s / p_ep:.0f} ms, torch "
          f"{1e3 * t_s / t_ep:.0f} ms (wall time over useful network-epochs)")
    if p_fit and t_fit and min(len(p_fit), len(t_fit)) == min(runs, t_runs):
        print(f"runs to 100 % train accuracy: ratio {(len(p_fit) / pkg_s) / (len(t_fit) / t_s):.1f}x "
              "(every run fitted on both sides)")
    ok = verdict(f"image SGD {name.upper()} network-epochs/s", (p_ep / pkg_s) / (t_ep / t_s),
                 FLOORS[name])
    if os.environ.get("BENCH_CPU"):
        print(f"(load average now {os.getloadavg()[0]:.1f})")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="fcn,cnn", help="comma-separated: fcn, cnn")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="JAX backend and torch device (gpu: CUDA; fails if none)")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=32, help="CNN channels per conv layer")
    ap.add_argument("--fcn-runs", type=int, default=16, help="package FCN runs (timed)")
    ap.add_argument("--cnn-runs", type=int, default=8, help="package CNN runs (timed)")
    ap.add_argument("--fcn-max-epochs", type=int, default=100)
    ap.add_argument("--cnn-max-epochs", type=int, default=1,
                    help="epoch cap per CNN run (1: per-network-epoch timing; 100: to fit)")
    ap.add_argument("--cnn-conv", choices=("auto", "im2col", "xla"), default="auto",
                    help="CNN.conv of the package's model (auto: the trainer's choice)")
    ap.add_argument("--slots", type=int, default=0, help="slots per device (0 = automatic)")
    ap.add_argument("--spmd", choices=("auto", "mesh", "per-device"), default="auto",
                    help="several devices: the runner's choice (spmd_for), or force one")
    ap.add_argument("--torch-runs", type=int, default=4, help="torch runs per model")
    ap.add_argument("--torch-seconds", type=float, default=60.0,
                    help="time box of each torch half (finishes the run in progress)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch threads (0: the faster of 1 and torch's default)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    bad = [n for n in names if n not in FLOORS]
    if bad or not names:
        ap.error(f"--models: expected a comma-separated subset of fcn,cnn, got {args.models!r}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: pip install -e '.[bench]'")
        return 2
    from _baselines import check_jax_platform, select_jax_platform, torch_device

    device = torch_device(args.device)
    select_jax_platform(args.device)
    check_jax_platform(args.device)
    oks = [bench_model(n, args, device) for n in names]
    return 0 if all(oks) else 1


if __name__ == "__main__":
    sys.exit(main())
