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

# Dense layers whose weight gradient ``train_apply`` forms as a sum of per-row outer products:
# at most this many rows and this many weights (the Boolean FCNs' minibatches).
OUTER_GRAD_MAX_ROWS = 16
OUTER_GRAD_MAX_WEIGHTS = 1 << 16


@jax.custom_vjp
def _dense_outer_grad(h, w, b):
    """``h @ w + b``, its weight gradient an unrolled sum over the k <= 16 rows of h.

    The gradient dL/dW = sum_k h_k^T g_k has contraction length k (the minibatch): XLA:CPU runs
    that batched GEMM (slots x 40 x 8 @ 8 x 40) at ~1/6 the rate of the forward product, while
    the k outer products summed in one elementwise fusion take ~8 us for 32 slots of 40 x 40
    (vs ~60 us; benchmarks/bench_sgd.py --compare-grad).  Same value up to float rounding
    (summation order / FMA): ~1 ulp."""
    return h @ w + b


def _dense_fwd(h, w, b):
    return h @ w + b, (h, w)


def _dense_bwd(res, g):
    h, w = res
    dh = jax.lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    dw = h[0, :, None] * g[0, None, :]
    db = g[0]
    for k in range(1, h.shape[0]):
        dw = dw + h[k, :, None] * g[k, None, :]
        db = db + g[k]
    return dh, dw, db


_dense_outer_grad.defvjp(_dense_fwd, _dense_bwd)


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

    def train_apply(self, params, x: jax.Array) -> jax.Array:
        """``apply`` (bit-identical outputs) with a backward pass for small minibatches: layers
        of at most ``OUTER_GRAD_MAX_WEIGHTS`` weights on at most ``OUTER_GRAD_MAX_ROWS`` rows
        form their weight and bias gradients as unrolled sums over the rows
        (``_dense_outer_grad``), the others as ``apply``.  Reverse mode only (a custom VJP):
        the SGD sampler's training step uses it; Hessians and JVPs use ``apply``."""
        phi = get_activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for l, layer in enumerate(params):
            if l > 0:
                h = phi(h)
            if h.shape[0] <= OUTER_GRAD_MAX_ROWS and layer["w"].size <= OUTER_GRAD_MAX_WEIGHTS:
                h = _dense_outer_grad(h, layer["w"], layer["b"])
            else:
                h = h @ layer["w"] + layer["b"]
        return h[:, 0]

    def apply_batched(self, params, x: jax.Array) -> jax.Array:
        """Outputs of a batch of networks on shared inputs: (n, N)."""
        return jax.vmap(self.apply, in_axes=(0, None))(params, x)


def fcn(in_dim: int, widths: Sequence[int] = (40, 40), **kw) -> FCN:
    return FCN(in_dim=in_dim, widths=tuple(widths), **kw)
