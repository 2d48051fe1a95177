"""Sharpness of SGD's solutions in parameter space, and the networks themselves.

The runner counts functions but keeps no parameters; ``trained_networks`` retrains given run ids
with the runner's own ``SGDTrainer`` (same stream, same per-run keys, same epoch step), so the
networks are the ones whose functions the runner counted (tested against ``functions.parquet``).

Sharpness of the training loss L(theta) = (1/m) sum_{i in S} loss(f_theta(x_i), y_i) at a
solution theta*, from Hessian-vector products H v = d/de grad L(theta* + e v) (no dense H):

- ``top_eigenvalue``: the largest eigenvalue lambda_max(H) by Lanczos with full
  reorthogonalisation (the largest Ritz value of the k x k tridiagonal T_k);
- ``hutchinson_trace``: tr H ~ (1/N) sum_j z_j^T H z_j with Rademacher z_j (unbiased,
  variance 2 sum_{i != j} H_ij^2 per probe; Hutchinson 1990).

``rescale_layers``: for a ReLU network, W_l, b_l -> a W_l, a b_l and W_{l+1} -> W_{l+1} / a
(a > 0) computes the same function (relu(a h) = a relu(h)), so any function-space quantity such
as log P_B(f) is unchanged, while the Hessian is not invariant (Dinh et al. 2017).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["trained_networks", "loss_on_S", "hvp_fn", "top_eigenvalue", "hutchinson_trace",
           "dense_hessian", "rescale_layers", "flat_params", "functions_of"]


def trained_networks(cfg, run_ids, *, task=None, slots: int = 32):
    """Retrain runs ``run_ids`` of ``cfg``'s SGD sampler: ``(params, records, model, task)``.

    ``params``: the final networks, stacked (leading axis = ``len(run_ids)``, in that order);
    ``records``: dict of numpy arrays ``run_id``, ``fitted`` (100 % training accuracy at the
    end, not diverged), ``epochs``, ``fit_epoch``, ``diverged``, as in ``runs.parquet``.
    Every random number of run r depends on r alone, so these are the runner's networks up to
    floating-point reassociation between slot counts.
    """
    from .experiment import sgd_trainer_and_run_kwargs
    from .models import build_model
    from .tasks import build_task

    task = task if task is not None else build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainer, _ = sgd_trainer_and_run_kwargs(cfg, task, model, slots=slots)
    ids = np.asarray(run_ids, np.int32)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"run_ids: expected a non-empty list of run ids, got {run_ids!r}")
    P = trainer.P
    outs, recs = [], {k: [] for k in ("run_id", "fitted", "epochs", "fit_epoch", "diverged")}
    for start in range(0, len(ids), P):
        chunk = ids[start:start + P]
        new = np.full(P, -1, np.int32)
        new[: len(chunk)] = chunk
        st = trainer.refill(trainer.empty_state(), np.ones(P, bool), new)
        while not np.asarray(st.done).all():
            st = trainer.run_epochs(st, np.int32(8))
        k = len(chunk)
        outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a[:k]), st.params))
        div = np.asarray(st.diverged)[:k]
        recs["run_id"].append(chunk)
        recs["fitted"].append(np.asarray(st.fits)[:k] & ~div)
        recs["epochs"].append(np.asarray(st.epoch)[:k])
        recs["fit_epoch"].append(np.asarray(st.fit_epoch)[:k])
        recs["diverged"].append(div)
    params = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outs)
    return params, {k: np.concatenate(v) for k, v in recs.items()}, model, task


def functions_of(model, params, x) -> list[str]:
    """The '0'/'1' strings of a stack of networks on inputs ``x`` (output > 0 -> '1')."""
    bits = np.asarray(model.apply_batched(params, jnp.asarray(x)) > 0)
    return ["".join("1" if b else "0" for b in row) for row in bits]


def loss_on_S(model, loss: str, x, y):
    """theta (one network's params) -> mean training loss on S (the sampler's loss)."""
    from .samplers import loss_fn

    lf = loss_fn(loss)
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.float32)
    return lambda params: jnp.mean(lf(model.apply(params, x), y))


def flat_params(params):
    """(flat vector, unravel) of ONE network's parameters."""
    return ravel_pytree(params)


def hvp_fn(f, params):
    """(v -> H v for the scalar ``f`` at ``params`` on the flat parameter vector, dimension)."""
    hvp, _ = _jitted(f)
    return (lambda v: hvp(params, v)), ravel_pytree(params)[0].shape[0]


@functools.lru_cache(maxsize=16)
def _jitted(f):
    # compiled once per loss function, reused for every network and probe: (H v, z^T H z batched)
    def hvp(params, v):
        flat, unravel = ravel_pytree(params)
        g = jax.grad(lambda u: f(unravel(u)))
        return jax.jvp(g, (flat,), (v,))[1]

    quad = jax.vmap(lambda params, v: jnp.dot(v, hvp(params, v)), in_axes=(None, 0))
    return jax.jit(hvp), jax.jit(quad)


def dense_hessian(f, params) -> np.ndarray:
    """The dense Hessian of ``f`` on the flat parameter vector (reference for tiny networks)."""
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda v: f(unravel(v)))(flat))


def top_eigenvalue(f, params, *, key: jax.Array, steps: int = 30) -> float:
    """lambda_max of the Hessian of ``f`` at ``params``: ``steps`` Lanczos iterations (capped at
    the dimension) with full reorthogonalisation from a Gaussian start vector drawn with ``key``."""
    hvp, d = hvp_fn(f, params)
    k = int(min(steps, d))
    v0 = jax.random.normal(key, (d,), jnp.float32)
    alphas, betas = _lanczos(hvp, v0, k)
    T = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    return float(np.linalg.eigvalsh(T)[-1])


def _lanczos(hvp, v0, k):
    # the k x k recurrence in float64 numpy; only H v runs in JAX (one compiled call per step)
    d = v0.shape[0]
    V = np.zeros((k + 1, d))
    V[0] = np.asarray(v0, float) / np.linalg.norm(np.asarray(v0, float))
    alphas, betas = np.zeros(k), np.zeros(k)
    for j in range(k):
        w = np.asarray(hvp(jnp.asarray(V[j], jnp.float32)), float)
        a = w @ V[j]
        for _ in range(2):  # full reorthogonalisation, twice (float32 H v loses orthogonality)
            w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        b = np.linalg.norm(w)
        alphas[j], betas[j] = a, b
        if b <= 1e-7 * max(1.0, abs(a)):  # invariant subspace found
            return alphas[: j + 1], np.append(betas[:j], 0.0)
        V[j + 1] = w / b
    return alphas, betas


def hutchinson_trace(f, params, *, key: jax.Array, n_probes: int = 100) -> tuple[float, float]:
    """(estimate of tr H, its standard error from the probes' spread): mean of z^T H z over
    ``n_probes`` Rademacher vectors z drawn with ``key``."""
    d = ravel_pytree(params)[0].shape[0]
    z = jax.random.rademacher(key, (n_probes, d), jnp.float32)
    q = np.asarray(_jitted(f)[1](params, z), float)
    return float(q.mean()), float(q.std(ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.nan


def rescale_layers(params, layer: int, a: float):
    """ONE network's params with layer ``layer`` (weights and bias) times ``a`` and the weights
    of layer ``layer + 1`` divided by ``a``; the same function for a ReLU FCN and a > 0."""
    if not a > 0:
        raise ValueError(f"a: expected a scale > 0, got {a!r}")
    if not 0 <= layer < len(params) - 1:
        raise ValueError(f"layer: expected 0 <= layer < {len(params) - 1} (a layer followed by "
                         f"another), got {layer!r}")
    out = [dict(p) for p in params]
    out[layer] = {"w": params[layer]["w"] * a, "b": params[layer]["b"] * a}
    out[layer + 1] = {"w": params[layer + 1]["w"] / a, "b": params[layer + 1]["b"]}
    return tuple(out)
