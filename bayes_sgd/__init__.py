"""bayes-sgd: is SGD a Bayesian sampler? Compare P_SGD(f|S) with P_B(f|S).

Pipeline: task -> model -> sampler -> function table -> analysis.
"""
from ._cpu_devices import use_one_device_per_core as _use_one_device_per_core

__version__ = "0.1.0"

_use_one_device_per_core()  # before any JAX backend starts (see _cpu_devices)
