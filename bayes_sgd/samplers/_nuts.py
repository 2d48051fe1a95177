"""Weight-space Bayesian posterior sampled with numpyro NUTS.

Target.  With theta the network weights and f_theta(x) the scalar network output,

    p_beta(theta | S)  ∝  p(theta) * prod_{(x, y) in S} Bernoulli(y | logits = beta * f_theta(x)),

where p(theta) is exactly the initialisation Gaussian of the model (W_l ~ N(0, sigma_w^2 /
fan_in), b_l ~ N(0, sigma_b^2)).  With s = 2y - 1 the log-likelihood of one point is
``-log(1 + exp(-beta * s * f))``:

* a misclassified point (s f < 0) costs about ``beta * |f|``, i.e. the network is down-weighted
  by ~exp(-beta |f|);
* a correctly classified point costs ``log(1 + exp(-beta |f|))``, which is ~log 2 at the decision
  boundary and -> 0 as beta -> inf.

So as beta -> inf, p_beta -> p(theta) restricted to {theta : sign f_theta = y on S}, the 0-1
likelihood posterior P_B whose push-forward onto functions on E is P_B(f | S).  At finite beta a
sample that fits S is still biased towards large margins by prod_i sigmoid(beta |f_i|); the
importance weights ``1[fits S] / prod_i sigmoid(beta |f_i(x_i)|)`` (``NutsResult.log_weights``)
remove that bias exactly, so ``sum_k w_k 1[f_k = f] / sum_k w_k`` is a consistent estimator of
P_B(f | S) at any beta.  The weights are bounded by 2^|S|, but their spread (hence the variance)
grows as beta shrinks: watch ``diagnostics["ess_importance"]``.

Parameterisation.  NUTS runs on standard-normal latents z and the weights are w = std * z
(non-centred): the prior is then an isotropic unit Gaussian whatever sigma_w, sigma_b and the
fan-ins are, so one step size and a diagonal mass matrix suit every layer.  Each chain starts
from its own prior draw.  The transition kernel is numpyro's functional NUTS (``hmc(...,
algo="NUTS")``) driven by our own jitted loop (see ``_run_chains``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer.hmc import hmc
from scipy.special import ndtri
from scipy.stats import rankdata

_CHAIN_METHODS = ("vectorized", "sequential")


@dataclass(frozen=True, eq=False)
class NutsResult:
    """Thinned posterior samples, summarised as functions.

    ``functions_on_test``: bool (n, |E|), the bits ``f(x) > 0`` on ``task.x_test`` in order;
    ``fits_train``: bool (n,), whether the sample classifies every point of S correctly;
    ``chain``: int (n,), the chain each sample came from (samples are chain-major);
    ``log_weights``: float (n,), log importance weights to the exact 0-1 posterior
    (``-inf`` where the sample does not fit S; see the module docstring);
    ``diagnostics``: plain dict of floats (JSON-serialisable);
    ``wall_time_s``: seconds for the whole call, JIT compilation included.
    """

    functions_on_test: np.ndarray
    fits_train: np.ndarray
    chain: np.ndarray
    log_weights: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def n_samples(self) -> int:
        return len(self.fits_train)


def _err(arg: str, expected: str, got) -> ValueError:
    return ValueError(f"{arg}: expected {expected}, got {got!r}")


def _check_int(arg: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise _err(arg, kind, value)
    return int(value)


def _stds(model) -> list[tuple[float, float]]:
    return [(model.sigma_w / math.sqrt(fan_in), model.sigma_b) for fan_in, _ in model.layer_sizes]


def _params_from_latents(model, z):
    """w = sigma_w / sqrt(fan_in) * z_w, b = sigma_b * z_b; works with any leading batch axes."""
    return tuple({"w": sw * zl["w"], "b": sb * zl["b"]} for zl, (sw, sb) in zip(z, _stds(model)))


def _potential_gen(model):
    """U(z) = |z|^2 / 2 + sum_S softplus(-beta s f(x)), s = 2y - 1: the negative log posterior
    of the latents up to a constant (softplus(-t) = -log sigmoid(t) is the Bernoulli NLL)."""

    def gen(x, s, beta):
        def potential(z):
            prior = 0.5 * sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(z))
            f = model.apply(_params_from_latents(model, z), x)
            return prior + jnp.sum(jax.nn.softplus(-beta * s * f))

        return potential

    return gen


@partial(
    jax.jit,
    static_argnames=(
        "model", "num_chains", "num_warmup", "n_draws", "thin",
        "target_accept", "max_tree_depth", "chain_method",
    ),
)
def _run_chains(
    key, x, s, beta, *, model, num_chains, num_warmup, n_draws, thin,
    target_accept, max_tree_depth, chain_method,
):
    """All chains, warm-up and sampling in one jitted call.  Data and beta are traced arguments
    so that a beta sweep or a new S of the same size reuses the compilation (NUTS takes 10-30 s
    to compile on a small CPU, far longer than sampling a small network)."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_gen(model), algo="NUTS")
    args = (x, s, beta)

    def one_chain(key):
        k_z, k_hmc = jax.random.split(key)
        ks = jax.random.split(k_z, 2 * len(model.layer_sizes))
        # A prior draw: chains start overdispersed relative to the posterior, so R-hat can bite.
        z0 = tuple(
            {"w": jax.random.normal(ks[2 * l], (fi, fo)), "b": jax.random.normal(ks[2 * l + 1], (fo,))}
            for l, (fi, fo) in enumerate(model.layer_sizes)
        )
        state = init_kernel(
            z0, num_warmup, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
            model_args=args, rng_key=k_hmc,
        )
        # One loop holding a single copy of the NUTS transition for warm-up and sampling alike:
        # a second copy would double the compile time, which dominates small runs.
        def body(i, c):
            st, zs, div, acc, nsteps, maxed = c
            st = sample_kernel(st, model_args=args)
            post = i >= num_warmup
            j = i - num_warmup
            keep = post & (j % thin == thin - 1)
            idx = jnp.clip(j // thin, 0, n_draws - 1)
            zs = jax.tree_util.tree_map(
                lambda buf, v: buf.at[idx].set(jnp.where(keep, v, buf[idx])), zs, st.z
            )
            # Per-step statistics are summed over every post-warm-up step, thinned or not.
            return (
                st, zs, div + (post & st.diverging), acc + jnp.where(post, st.accept_prob, 0.0),
                nsteps + jnp.where(post, st.num_steps, 0),
                maxed + (post & (st.num_steps >= 2**max_tree_depth - 1)),
            )

        zs = jax.tree_util.tree_map(lambda v: jnp.zeros((n_draws,) + v.shape, v.dtype), z0)
        zero_i, zero_f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        carry = (state, zs, zero_i, zero_f, zero_i, zero_i)
        n_steps = num_warmup + n_draws * thin
        state, zs, div, acc, nsteps, maxed = jax.lax.fori_loop(0, n_steps, body, carry)
        stats = {
            "divergences": div, "accept_prob_sum": acc, "num_steps_sum": nsteps,
            "max_tree_depth_hits": maxed, "step_size": state.adapt_state.step_size,
        }
        return zs, stats

    keys = jax.random.split(key, num_chains)
    if chain_method == "vectorized":
        return jax.vmap(one_chain)(keys)
    return jax.lax.map(one_chain, keys)


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    """Vehtari et al. (2021) rank normalisation over all chains and draws (axes 0, 1)."""
    c, d = x.shape[:2]
    flat = x.reshape(c * d, -1)
    # Average ranks for ties: integer scalars (e.g. the number of ones of f) tie massively, and
    # breaking ties by position would invent autocorrelation.
    ranks = rankdata(flat, method="average", axis=0)
    return ndtri((ranks - 0.375) / (c * d + 0.25)).reshape(x.shape)


def _rhat_ess(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split R-hat (numpyro) and bulk ESS (numpyro ESS of rank-normalised draws) per element of
    ``x`` (chains, draws, ...).  Elements constant over all draws get R-hat 1 and ESS = number
    of draws: every chain agrees, and numpyro would return nan (0/0).  With fewer than 4 draws
    per chain (no split halves of >= 2 draws) both are nan."""
    x = np.asarray(x, np.float64)
    c, d = x.shape[:2]
    flat = x.reshape(c, d, -1)
    const = np.all(flat == flat[:1, :1], axis=(0, 1))
    if d < 4:
        return np.full(flat.shape[-1], np.nan), np.full(flat.shape[-1], np.nan)
    rhat = np.ones(flat.shape[-1])
    ess = np.full(flat.shape[-1], float(c * d))
    live = ~const
    if live.any():
        sub = flat[:, :, live]
        rhat[live] = split_gelman_rubin(sub)
        ess[live] = effective_sample_size(_rank_normalise(sub))
    return rhat, ess


_COMPILED: dict = {}
_COMPILED_MAX = 16


def _compiled(static: dict, args: tuple):
    """AOT-compiled ``_run_chains`` for these settings and shapes, cached (compilation dominates
    small runs) so that ``compile_time_s`` and ``sampling_time_s`` are measured apart."""
    specs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args)
    k = (tuple(sorted(static.items(), key=lambda kv: kv[0])), specs)
    if k in _COMPILED:
        return _COMPILED[k], 0.0
    t = time.perf_counter()
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[k] = _run_chains.lower(*specs, **static).compile()
    return _COMPILED[k], time.perf_counter() - t


def _check_settings(beta, num_chains, num_warmup, num_samples, thin, max_tree_depth,
                    target_accept, chain_method):
    """``sample_nuts``'s settings checked (``ValueError`` naming the argument), ints and floats."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)) or not (
        math.isfinite(beta) and beta > 0
    ):
        raise _err("beta", "a positive float", beta)
    num_chains = _check_int("num_chains", num_chains, 1)
    num_warmup = _check_int("num_warmup", num_warmup, 0)
    num_samples = _check_int("num_samples", num_samples, 1)
    thin = _check_int("thin", thin, 1)
    if thin > num_samples:
        raise _err("thin", f"an int <= num_samples={num_samples}", thin)
    max_tree_depth = _check_int("max_tree_depth", max_tree_depth, 1)
    if not isinstance(target_accept, (int, float, np.floating)) or not 0.0 < target_accept < 1.0:
        raise _err("target_accept", "a float in (0, 1)", target_accept)
    if chain_method not in _CHAIN_METHODS:
        raise _err("chain_method", f"one of {_CHAIN_METHODS}", chain_method)
    return float(beta), num_chains, num_warmup, num_samples, thin, max_tree_depth


def _evaluate(model, task, z, x_train, x_test, beta: float, n: int):
    """Every retained sample through the network on S and E in one batched call: functions on
    E, fits S, log importance weights (log 1/prod sigmoid(beta |f|) = sum log1p(exp(-beta |f|))
    for samples that fit S, else -inf) and the log-likelihood on S."""
    flat_z = jax.tree_util.tree_map(lambda v: v.reshape((n,) + v.shape[2:]), z)
    out = np.asarray(
        model.apply_batched(_params_from_latents(model, flat_z), jnp.concatenate([x_train, x_test]))
    )
    f_train, f_test = out[:, : task.m], out[:, task.m :]
    y = np.asarray(task.y_train, bool)
    fits = ((f_train > 0) == y).all(axis=1)
    margin = np.abs(f_train.astype(np.float64))
    log_w = np.where(fits, np.log1p(np.exp(-beta * margin)).sum(axis=1), -np.inf)
    sign = 2.0 * y - 1.0
    loglik = -np.logaddexp(0.0, -beta * sign * f_train.astype(np.float64)).sum(axis=1)
    return f_test > 0, fits, log_w, loglik


def _diagnostics(z, stats, functions, loglik, fits, log_w, num_chains, n_draws, thin) -> dict:
    """Split R-hat and bulk ESS (all weights, number of ones on E, log-likelihood on S), the
    per-step statistics and the Kish ESS of the importance weights."""
    diag: dict[str, float] = {}
    rh, es = [], []
    for v in jax.tree_util.tree_leaves(z):
        r, e = _rhat_ess(np.asarray(v))
        rh.append(r)
        es.append(e)
    rh, es = np.concatenate(rh), np.concatenate(es)
    diag.update(
        rhat_max=float(rh.max()),
        ess_bulk_min=float(es.min()),
        ess_bulk_median=float(np.median(es)),
    )
    for name, scalar in (("n_ones", functions.sum(axis=1)), ("loglik", loglik)):
        r, e = _rhat_ess(scalar.reshape(num_chains, n_draws))
        diag[f"rhat_{name}"], diag[f"ess_{name}"] = float(r[0]), float(e[0])
    w = np.exp(log_w - log_w.max()) if fits.any() else np.zeros_like(log_w)
    n_steps = num_chains * n_draws * thin
    diag.update(
        divergences=float(stats["divergences"].sum()),
        accept_prob_mean=float(stats["accept_prob_sum"].sum() / n_steps),
        num_steps_mean=float(stats["num_steps_sum"].sum() / n_steps),
        frac_max_tree_depth=float(stats["max_tree_depth_hits"].sum() / n_steps),
        step_size_mean=float(stats["step_size"].mean()),
        frac_fits_train=float(fits.mean()),
        ess_importance=float(w.sum() ** 2 / (w**2).sum()) if fits.any() else 0.0,
    )
    return diag


def sample_nuts(
    model,
    task,
    *,
    key: jax.Array,
    beta: float,
    num_chains: int = 4,
    num_warmup: int,
    num_samples: int,
    thin: int = 1,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    chain_method: str = "vectorized",
) -> NutsResult:
    """Sample p_beta(theta | S) ∝ p(theta) prod_S sigmoid(beta (2y-1) f_theta(x)) with NUTS.

    ``num_samples`` draws per chain are kept after ``num_warmup`` adaptation steps; every
    ``thin``-th is returned, so the result holds ``num_chains * (num_samples // thin)`` samples.
    ``chain_method="vectorized"`` runs the chains in lock-step under ``vmap`` (each iteration
    costs the longest tree among the chains); ``"sequential"`` runs them one after another.
    Warm-up adapts the step size and a diagonal mass matrix (numpyro's windowed adaptation).

    ``diagnostics`` holds: ``rhat_max`` / ``ess_bulk_min`` / ``ess_bulk_median`` over all latent
    weights; ``rhat_n_ones`` / ``ess_n_ones`` of the number of ones of f on E and
    ``rhat_loglik`` / ``ess_loglik`` of the log-likelihood on S (split R-hat, bulk ESS);
    ``divergences``, ``accept_prob_mean``, ``num_steps_mean``, ``frac_max_tree_depth``,
    ``step_size_mean`` (per-step statistics over all post-warm-up steps); ``frac_fits_train``,
    ``ess_importance`` (Kish ESS (sum w)^2 / sum w^2 of ``log_weights``, 0 if nothing fits S);
    timings ``compile_time_s`` (0 when a previous call with the same settings and shapes was
    compiled already; beta and the data are traced) and ``sampling_time_s`` (warm-up included).
    R-hat and ESS need >= 4 retained draws per chain (nan otherwise).

    Raises ``ValueError`` naming the argument for invalid settings.
    """
    t0 = time.perf_counter()
    beta, num_chains, num_warmup, num_samples, thin, max_tree_depth = _check_settings(
        beta, num_chains, num_warmup, num_samples, thin, max_tree_depth, target_accept,
        chain_method)
    if tuple(task.input_shape) != (model.in_dim,):
        raise ValueError(
            f"task: expected inputs of shape ({model.in_dim},) for the model, "
            f"got {task.input_shape}"
        )
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)  # numpyro's kernels split raw uint32 keys
    key = jnp.asarray(key)

    x_train = jnp.asarray(task.x_train, jnp.float32).reshape(task.m, -1)
    x_test = jnp.asarray(task.x_test, jnp.float32).reshape(task.n_test, -1)
    s_train = 2.0 * jnp.asarray(task.y_train, jnp.float32) - 1.0
    beta_arr = jnp.asarray(beta, jnp.float32)
    static = dict(
        model=model, num_chains=num_chains, num_warmup=num_warmup, n_draws=num_samples // thin,
        thin=thin, target_accept=float(target_accept), max_tree_depth=max_tree_depth,
        chain_method=chain_method,
    )
    args = (key, x_train, s_train, beta_arr)
    run, compile_time = _compiled(static, args)
    t_s = time.perf_counter()
    z, stats = run(*args)
    jax.block_until_ready(z)
    t_e = time.perf_counter()
    stats = {k: np.asarray(v) for k, v in stats.items()}

    n_draws = num_samples // thin
    functions, fits, log_w, loglik = _evaluate(model, task, z, x_train, x_test, beta,
                                               num_chains * n_draws)

    diag = _diagnostics(z, stats, functions, loglik, fits, log_w, num_chains, n_draws, thin)
    diag.update(compile_time_s=compile_time, sampling_time_s=t_e - t_s,
                n_samples=float(num_chains * n_draws), beta=beta)
    return NutsResult(
        functions_on_test=functions,
        fits_train=fits,
        chain=np.repeat(np.arange(num_chains), n_draws),
        log_weights=log_w,
        diagnostics=diag,
        wall_time_s=time.perf_counter() - t0,
    )
