"""Gaussian-process estimate of P_B: NNGP kernels and Gaussian orthant probabilities.

``P_B(S) = P(sign(f(X_S)) = y_S)`` with ``f ~ GP(0, K_NNGP)`` is ``exp(log_orthant_probability(
K, y).log_p)``; the conditional ``P_B(f_E | S)`` is either ``P(S ∪ E) / P(S)`` or the orthant
probability of the EP predictive ``ep_predictive(...)``; ``ep_log_orthant_many`` scores many sign
patterns under one covariance at once (the GP sampler's scoring of functions);
``top_functions`` finds the most probable functions on E of such a predictive (sampling, scored by
orthant probabilities), ``greedy_mode`` a local mode by bit flips.
"""
from .._cpu_devices import use_one_device_per_core

use_one_device_per_core()  # before any JAX backend starts (see bayes_sgd._cpu_devices)
from ._ep import EPState, trunc_moments
from ._ep_batch import OrthantBatch, ep_log_orthant_many
from ._kernels import fcn_nngp_kernel, fcn_nngp_kernel_for, mc_kernel_stderr, mc_nngp_kernel
from ._orthant import (
    EXACT_MAX_DIM,
    OrthantResult,
    ep_posterior,
    ep_predictive,
    log_orthant_probability,
    pac_bayes_bound,
)
from ._top import TopFunctions, greedy_mode, sample_sign_patterns, top_functions

__all__ = [
    "EPState",
    "EXACT_MAX_DIM",
    "OrthantBatch",
    "OrthantResult",
    "ep_log_orthant_many",
    "ep_posterior",
    "ep_predictive",
    "fcn_nngp_kernel",
    "fcn_nngp_kernel_for",
    "log_orthant_probability",
    "mc_kernel_stderr",
    "mc_nngp_kernel",
    "pac_bayes_bound",
    "TopFunctions",
    "greedy_mode",
    "sample_sign_patterns",
    "top_functions",
    "trunc_moments",
]
