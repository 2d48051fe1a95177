"""One XLA CPU device per core, set when ``bayes_sgd`` is imported (before JAX starts).

XLA:CPU spreads one executable's ops over a shared thread pool; for the many tiny products
of this package (8x40 @ 40x40 per training slot, 2,001 normals per network) that costs more
than it gains: an SGD epoch of 64 vmapped slots runs 1.3x faster pinned to one core than
spread over two.  With one device per core, the samplers give each device its own share of
the work (rejection chunks round-robin, SGD slots per device), which keeps every core busy
with single-threaded kernels: 2.6x the SGD throughput of one device on 2 cores
(``benchmarks/bench_sgd.py``).  Large ops (EP's Cholesky factorisations) still use every
core from any one device.

``$BAYES_SGD_CPU_DEVICES`` overrides the count (``1`` keeps JAX's single CPU device).  Nothing
changes when JAX's CPU backend has already started, when ``XLA_FLAGS`` sets
``--xla_force_host_platform_device_count``, or when ``jax_num_cpu_devices`` was set.  Results
never depend on the number of devices (every random number is keyed by chunk or run id).
"""
from __future__ import annotations

import os

ENV = "BAYES_SGD_CPU_DEVICES"
MAX_DEVICES = 16


def cpu_device_count() -> int:
    """CPU devices to create: ``$BAYES_SGD_CPU_DEVICES``, else the cores this process may use."""
    text = os.environ.get(ENV, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{ENV}: expected a positive integer, got {text!r}") from None
        if n < 1:
            raise ValueError(f"{ENV}: expected a positive integer, got {text!r}")
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_DEVICES))


def use_one_device_per_core() -> int | None:
    """Ask JAX for ``cpu_device_count()`` CPU devices; returns the count set, or None if left."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    import jax

    if jax.config.jax_num_cpu_devices not in (-1, None):
        return None
    n = cpu_device_count()
    if n == 1:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the CPU backend has started: its device count is fixed
        return None
    return n
