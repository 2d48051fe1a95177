"""Reference implementations the benchmarks compare against, and shared helpers.

Each baseline does the same work as the package path it is compared with, one network at a
time, the way a straightforward script would:

* ``numpy_prior_loop``: draw W1, b1, W2, b2, W3, b3 from the NNGP prior with
  ``np.random.default_rng``, forward on the whole 2^n x n input matrix, threshold at 0, pack
  the truth table with ``np.packbits``.  Packed tables are counted in blocks with the package's
  exact ``FunctionCounter`` (the same counter the package path uses).
* ``numpy_rejection_loop``: the same loop (draw, forward on all inputs, threshold), keeping the
  network iff it classifies S exactly and counting its packed function on E.  ``s_first=True``
  evaluates S first and E only for networks that fit, as the package does (a stricter
  baseline, reported for information).
* ``torch_sgd_loop``: one network at a time in PyTorch (plain SGD, BCE-with-logits, minibatches
  reshuffled each epoch, 100 % train accuracy checked at every epoch boundary, capped at
  ``max_epochs``), time-boxed.

All benchmarks run a baseline and the package side by side in one process and report the
ratio of rates, because absolute rates on a shared machine vary with its load.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from bayes_sgd.counting import FunctionCounter

# The old default experiment (and4, |S| = 16, FCN 7-40-40-1, SGD lr 0.1), kept in the package as
# a small fixed config: the benchmarks start from it, so they measure the same setting whatever
# the default (boolean_n7.toml) is.
QUICK_CONFIG = str(resources.files("bayes_sgd") / "experiments" / "quick_and4_n7.toml")


# ---- machine / settings banner ----------------------------------------------------------------

def banner(title: str, settings: dict) -> None:
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"== {title} ==")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average {load}, "
          f"python {platform.python_version()}")
    for k, v in settings.items():
        print(f"  {k}: {v}")


def timing_parser(doc: str):
    """The arguments every sampling benchmark takes: round length, rounds, chunk size."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per side per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=0, help="networks per chunk (0 = default)")
    return ap


def verdict(name: str, ratio: float, floor: float) -> bool:
    ok = ratio >= floor
    print(f"{name}: ratio {ratio:.1f}x (floor {floor:g}x) -> {'PASS' if ok else 'FAIL'}")
    return ok


def interleave(fns: dict, *, rounds: int, seconds: float) -> dict:
    """Run each ``fn(seconds) -> (n_items, elapsed)`` ``rounds`` times, alternating, so that
    both sides see the same machine load; return the summed items / summed time per name."""
    tot = {k: [0, 0.0, 0.0] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            c = time.process_time()
            n, dt = fn(seconds)
            tot[k][0] += n
            tot[k][1] += dt
            tot[k][2] += time.process_time() - c
    if os.environ.get("BENCH_CPU"):
        print("per CPU-second of this process:",
              {k: f"{n / c:,.0f}/cpu-s ({c / t:.2f} cores)" for k, (n, t, c) in tot.items()})
    return {k: n / t for k, (n, t, _) in tot.items()}


def chunk_rounds(run_chunks, state: dict, seconds: float, on_part=None, step: int = 8):
    """The package side: ``run_chunks(range(c, c + step))`` on fresh chunk indices (from
    ``state["next"]``) for ``seconds``; ``on_part(part)`` sees each result. -> (samples, elapsed)."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        c = state["next"]
        part = run_chunks(range(c, c + step))
        state["next"] += step
        if on_part is not None:
            on_part(part)
        n += part.n_samples
    return n, time.perf_counter() - t0


# ---- numpy: random-init sampling --------------------------------------------------------------

def _draw(rng, dims, sigma_w, sigma_b):
    layers = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        w = rng.standard_normal((fan_in, fan_out)) * (sigma_w / np.sqrt(fan_in))
        b = rng.standard_normal(fan_out) * sigma_b
        layers.append((w, b))
    return layers


def _forward(layers, x):
    h = x
    for i, (w, b) in enumerate(layers):
        if i:
            h = np.maximum(h, 0.0)
        h = h @ w + b
    return h[:, 0]


def numpy_prior_loop(x: np.ndarray, seconds: float, *, widths=(40, 40), sigma_w=1.0,
                     sigma_b=1.0, seed=0, block=1024) -> tuple[int, float, FunctionCounter]:
    """Random-init sampling of whole truth tables, one network at a time, for ``seconds``."""
    rng = np.random.default_rng(seed)
    dims = [x.shape[1], *widths, 1]
    counter = FunctionCounter(len(x))
    buf = np.empty((block, (len(x) + 7) // 8), np.uint8)
    n, t0 = 0, time.perf_counter()
    while True:
        for i in range(block):
            layers = _draw(rng, dims, sigma_w, sigma_b)
            buf[i] = np.packbits(_forward(layers, x) > 0)
        counter.add_packed(buf, half=(n // block) % 2)
        n += block
        if time.perf_counter() - t0 >= seconds:
            return n, time.perf_counter() - t0, counter


def numpy_rejection_loop(x: np.ndarray, s_idx, e_idx, y_s, seconds: float, *, widths=(40, 40),
                         sigma_w=1.0, sigma_b=1.0, seed=0, s_first=False,
                         block=1024) -> tuple[int, float, FunctionCounter]:
    """Rejection sampling of P_B(f|S), one network at a time, for ``seconds``."""
    rng = np.random.default_rng(seed)
    dims = [x.shape[1], *widths, 1]
    x_s, x_e = x[s_idx], x[e_idx]
    y_s = np.asarray(y_s, bool)
    counter = FunctionCounter(len(e_idx))
    n, t0 = 0, time.perf_counter()
    while True:
        kept = []
        for _ in range(block):
            layers = _draw(rng, dims, sigma_w, sigma_b)
            if s_first:
                if np.array_equal(_forward(layers, x_s) > 0, y_s):
                    kept.append(np.packbits(_forward(layers, x_e) > 0))
            else:
                bits = _forward(layers, x) > 0
                if np.array_equal(bits[s_idx], y_s):
                    kept.append(np.packbits(bits[e_idx]))
        if kept:
            counter.add_packed(np.stack(kept))
        n += block
        if time.perf_counter() - t0 >= seconds:
            return n, time.perf_counter() - t0, counter


# ---- torch: SGD one network at a time ---------------------------------------------------------

@dataclass
class TorchSGDResult:
    n_runs: int
    seconds: float
    epochs: list
    fitted: list

    @property
    def runs_per_s(self) -> float:
        return self.n_runs / self.seconds



def _train_to_fit(net, opt, x, y, loss_fn, *, batch_size, max_epochs, fit_chunk):
    """One torch network trained until it classifies (x, y) exactly, checked at every epoch
    boundary (in chunks of ``fit_chunk`` inputs), or for ``max_epochs``; minibatches
    reshuffled every epoch. -> (epochs trained, fitted)"""
    import torch

    m = len(x)
    ep = 0
    while True:
        with torch.no_grad():
            out = torch.cat([net(x[i:i + fit_chunk])[:, 0] for i in range(0, m, fit_chunk)])
            if bool(((out > 0) == (y > 0.5)).all()):
                return ep, True
        if ep >= max_epochs:
            return ep, False
        perm = torch.randperm(m, device=x.device)
        for i in range(0, m, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss_fn(net(x[idx])[:, 0], y[idx]).backward()
            opt.step()
        ep += 1

def torch_sgd_loop(x_s: np.ndarray, y_s: np.ndarray, *, lr: float, batch_size=8, widths=(40, 40),
                   sigma_w=1.0, sigma_b=1.0, max_epochs=2000, max_runs=20,
                   max_seconds=120.0, seed=0, threads: int | None = None,
                   device=None) -> TorchSGDResult:
    """Train one network at a time until it fits S (or ``max_epochs``); stop after
    ``max_runs`` runs or once ``max_seconds`` have passed (finishing the current run)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x = torch.as_tensor(x_s, dtype=torch.float32, device=device)
    y = torch.as_tensor(y_s, dtype=torch.float32, device=device)
    m = len(x)
    dims = [x.shape[1], *widths, 1]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    epochs, fitted = [], []
    t0 = time.perf_counter()
    while len(epochs) < max_runs and (time.perf_counter() - t0 < max_seconds or not epochs):
        layers = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            lin = torch.nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                lin.weight.normal_(0.0, sigma_w / fan_in ** 0.5)
                lin.bias.normal_(0.0, sigma_b)
            layers += [lin, torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers[:-1]).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        ep, ok = _train_to_fit(net, opt, x, y, loss_fn, batch_size=batch_size,
                               max_epochs=max_epochs, fit_chunk=m)
        epochs.append(ep)
        fitted.append(ok)
    return TorchSGDResult(len(epochs), time.perf_counter() - t0, epochs, fitted)


# ---- --device cpu|gpu ----------------------------------------------------------------------

def select_jax_platform(kind: str) -> None:
    """Before JAX's backends start: ``--device gpu`` -> CUDA only, ``cpu`` -> CPU only."""
    import jax

    jax.config.update("jax_platforms", "cuda" if kind == "gpu" else "cpu")


def check_jax_platform(kind: str):
    import jax

    import bayes_sgd.models  # noqa: F401  (one CPU device per core: before JAX's backend starts)

    try:
        devs = jax.devices()
    except Exception as e:  # RuntimeError, or an AssertionError when no platform is left
        why = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise SystemExit(f"--device {kind}: JAX found no {kind.upper()} backend "
                         f"({why}); install jax[cuda12] on a GPU machine") from None
    return devs


# ---- torch: image SGD one network at a time ---------------------------------------------------

def torch_device(kind: str):
    """``torch.device`` for ``--device cpu|gpu``; raises SystemExit with one line if no GPU."""
    import torch

    if kind == "gpu":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device gpu: torch {torch.__version__} sees no CUDA GPU "
                             "(install a CUDA build of torch==2.13.0 on a machine with a GPU)")
        return torch.device("cuda")
    return torch.device("cpu")


def torch_image_net(model, *, device=None):
    """A torch network with ``model``'s layout (the package's FCN or CNN) and its NNGP init:
    W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2), phi between layers, scalar readout."""
    import warnings

    import torch

    # torch pads an even SAME kernel with a copy of the input, and says so on every call
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[model.activation]
    layers = []
    if hasattr(model, "filters"):  # CNN: NCHW in torch, NHWC in the package (same law)
        c_in = model.input_shape[-1]
        for c, k, s, pad, pool in zip(model.filters, model.kernel_sizes, model.strides,
                                      model.padding, model.intermediate_pooling):
            if pool or (pad == "SAME" and s != (1, 1)):
                raise NotImplementedError("torch baseline: pooling / strided SAME convolutions")
            layers += [torch.nn.Conv2d(c_in, c, k, stride=s, padding=pad.lower()), act()]
            c_in = c
        if model.pooling is not None:
            raise NotImplementedError("torch baseline: global pooling")
        layers.append(torch.nn.Flatten())
        dims = [model.readout_dim, *model.dense_widths, 1]
    else:
        layers.append(torch.nn.Flatten())
        dims = [model.in_dim, *model.widths, 1]
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), act()]
    net = torch.nn.Sequential(*layers[:-1]).to(device)
    with torch.no_grad():
        for mod in net:
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.normal_(0.0, model.sigma_w / fan_in ** 0.5)
                mod.bias.normal_(0.0, model.sigma_b)
    return net


@dataclass
class TorchImageResult:
    n_runs: int
    seconds: float
    fit_epochs: list  # epoch of the first fit (-1: never fitted)
    epochs: list  # epochs trained

    @property
    def network_epochs(self) -> int:
        return sum(self.epochs)


def torch_image_loop(model, x_s: np.ndarray, y_s: np.ndarray, *, optimizer="adam", lr=1e-3,
                     batch_size=32, max_epochs=100, max_runs=4, max_seconds=60.0, seed=0,
                     device=None, fit_chunk=1000) -> TorchImageResult:
    """Train one network at a time until it classifies S exactly (checked at every epoch
    boundary, as the package does) or ``max_epochs``; BCE with logits, minibatches reshuffled
    every epoch. Stops after ``max_runs`` runs or once ``max_seconds`` have passed
    (finishing the run in progress)."""
    import torch

    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(x_s, np.float32), device=device)
    if x.ndim == 4:  # NHWC -> NCHW
        x = x.permute(0, 3, 1, 2).contiguous()
    y = torch.as_tensor(np.asarray(y_s, np.float32), device=device)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    fit_epochs, epochs = [], []
    t0 = time.perf_counter()
    while len(epochs) < max_runs and (time.perf_counter() - t0 < max_seconds or not epochs):
        net = torch_image_net(model, device=device)
        opt = opt_cls(net.parameters(), lr=lr)
        ep, ok = _train_to_fit(net, opt, x, y, loss_fn, batch_size=batch_size,
                               max_epochs=max_epochs, fit_chunk=fit_chunk)
        fit_epochs.append(ep if ok else -1)
        epochs.append(ep)
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return TorchImageResult(len(epochs), time.perf_counter() - t0, fit_epochs, epochs)
