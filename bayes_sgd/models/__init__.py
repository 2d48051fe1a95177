"""Models: batched JAX networks drawn from the NNGP initialisation prior.

Every model exposes ``init(*, key, n) -> params`` (leading axis ``n`` on every leaf),
``apply(params, x) -> (N,)`` for one network and ``apply_batched(params, x) -> (n, N)``.
"""
from ._activations import ACTIVATIONS, get_activation
from ._fcn import FCN

__all__ = ["ACTIVATIONS", "FCN", "get_activation"]
