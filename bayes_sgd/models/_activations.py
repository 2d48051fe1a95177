"""Pointwise activations shared by the networks and their NNGP kernels."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": erf,
    "linear": lambda x: x,
}


def get_activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None
