"""Models: batched JAX networks drawn from the NNGP initialisation prior.

Every model exposes ``init(*, key, n) -> params`` (leading axis ``n`` on every leaf),
``apply(params, x) -> (N,)`` for one network and ``apply_batched(params, x) -> (n, N)``.
"""
from .._cpu_devices import use_one_device_per_core

use_one_device_per_core()  # before any JAX backend starts (see bayes_sgd._cpu_devices)
import math

from ._activations import ACTIVATIONS, get_activation
from ._cnn import CNN
from ._cnn import _conv as conv2d  # NHWC x HWIO, impl "xla" | "im2col" (the CPU default)
from ._fcn import FCN

__all__ = ["ACTIVATIONS", "CNN", "FCN", "build_model", "conv2d", "get_activation"]


def build_model(cfg, input_shape: tuple[int, ...]):
    """The model described by a ``ModelConfig`` (validated by ``bayes_sgd.config``: the model's
    own checks name their arguments) for inputs of ``input_shape``."""
    if cfg.arch == "fcn":
        return FCN(in_dim=math.prod(input_shape), widths=tuple(cfg.widths),
                   activation=cfg.activation, sigma_w=cfg.sigma_w, sigma_b=cfg.sigma_b)
    if cfg.arch == "cnn":  # CNN checks input_shape itself: (H, W) or (H, W, C)
        return CNN(input_shape=tuple(input_shape), filters=tuple(cfg.filters),
                   kernel_sizes=tuple(cfg.kernel_sizes), strides=tuple(cfg.strides),
                   padding=tuple(cfg.padding),
                   pooling=None if cfg.pooling == "none" else cfg.pooling,
                   activation=cfg.activation, sigma_w=cfg.sigma_w, sigma_b=cfg.sigma_b,
                   dense_widths=tuple(cfg.dense_widths))
    raise ValueError(f"cfg.arch: expected 'fcn' or 'cnn', got {cfg.arch!r}")
