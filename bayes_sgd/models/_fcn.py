"""Fully connected network with the NNGP initialisation convention.

Layer l computes h_{l+1} = W_l phi(h_l) + b_l with W_l ~ N(0, sigma_w^2 / fan_in) and
b_l ~ N(0, sigma_b^2) (Valle-Perez et al. 2019; Mingard et al. 2021). Parameters are a tuple
of ``{"w", "b"}`` dicts; a batch of ``n`` networks carries a leading axis ``n`` on every leaf so
that thousands of networks evaluate and train together under ``jax.vmap``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp

from ._activations import get_activation


@dataclass(frozen=True)
class FCN:
    """A ``in_dim -> widths... -> 1`` ReLU/tanh/erf network with scalar output."""

    in_dim: int
    widths: tuple[int, ...] = (40, 40)
    activation: str = "relu"
    sigma_w: float = 1.0
    sigma_b: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        get_activation(self.activation)  # validate early

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        dims = [self.in_dim, *self.widths, 1]
        return list(zip(dims[:-1], dims[1:]))

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in self.layer_sizes)

    def init(self, *, key: jax.Array, n: int, dtype=jnp.float32):
        """Draw ``n`` independent networks from the prior; every leaf has leading axis ``n``."""
        keys = jax.random.split(key, 2 * len(self.layer_sizes))
        layers = []
        for l, (fan_in, fan_out) in enumerate(self.layer_sizes):
            w_std = self.sigma_w / jnp.sqrt(jnp.asarray(fan_in, dtype))
            w = w_std * jax.random.normal(keys[2 * l], (n, fan_in, fan_out), dtype)
            b = self.sigma_b * jax.random.normal(keys[2 * l + 1], (n, fan_out), dtype)
            layers.append({"w": w, "b": b})
        return tuple(layers)

    def features(self, hidden, x: jax.Array) -> jax.Array:
        """phi of the last hidden layer of ONE network (its layers but the output one): (N, width)."""
        phi = get_activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for l, layer in enumerate(hidden):
            if l > 0:
                h = phi(h)
            h = h @ layer["w"] + layer["b"]
        return phi(h)

    def apply(self, params, x: jax.Array) -> jax.Array:
        """Outputs of ONE network (unbatched params) on inputs ``x`` of shape (N, in_dim) -> (N,)."""
        out = params[-1]
        return (self.features(params[:-1], x) @ out["w"] + out["b"])[:, 0]

    def apply_batched(self, params, x: jax.Array) -> jax.Array:
        """Outputs of a batch of networks on shared inputs: (n, N)."""
        return jax.vmap(self.apply, in_axes=(0, None))(params, x)


def fcn(in_dim: int, widths: Sequence[int] = (40, 40), **kw) -> FCN:
    return FCN(in_dim=in_dim, widths=tuple(widths), **kw)
