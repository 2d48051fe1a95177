"""Gaussian-process estimate of P_B: NNGP kernels and Gaussian orthant probabilities.

``P_B(S) = P(sign(f(X_S)) = y_S)`` with ``f ~ GP(0, K_NNGP)`` is ``exp(log_orthant_probability(
K, y).log_p)``; the conditional ``P_B(f_E | S)`` is either ``P(S ∪ E) / P(S)`` or the orthant
probability of the EP predictive ``ep_predictive(...)``.
"""
from .._cpu_devices import use_one_device_per_core

use_one_device_per_core()  # before any JAX backend starts (see bayes_sgd._cpu_devices)
from ._ep import EPState
from ._kernels import fcn_nngp_kernel, fcn_nngp_kernel_for, mc_kernel_stderr, mc_nngp_kernel
from ._orthant import (
    EXACT_MAX_DIM,
    OrthantResult,
    ep_posterior,
    ep_predictive,
    log_orthant_probability,
    pac_bayes_bound,
)

__all__ = [
    "EPState",
    "EXACT_MAX_DIM",
    "OrthantResult",
    "ep_posterior",
    "ep_predictive",
    "fcn_nngp_kernel",
    "fcn_nngp_kernel_for",
    "log_orthant_probability",
    "mc_kernel_stderr",
    "mc_nngp_kernel",
    "pac_bayes_bound",
]
