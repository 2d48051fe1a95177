"""Gaussian orthant probabilities ``ln P(sign(z) = s)``, ``z ~ N(mean, K)``: the GP estimate of P_B.

With the Heaviside likelihood, ``P_B(S) = P(sign(f(X_S)) = y_S)`` for ``f ~ GP(0, K)``
(Valle-Perez et al. 2019; Mingard et al. 2021). Flipping signs, ``z' = D z`` with ``D = diag(s)``
gives ``P(z' > 0)``, ``z' ~ N(D mean, D K D)``.

Methods:

- ``"ep"``: expectation propagation (``_ep``); deterministic, any size, approximate.
- ``"exact"``: ``scipy.stats.multivariate_normal.cdf`` (Genz's randomised QMC) for
  ``n <= EXACT_MAX_DIM``, checked against a short minimax-tilting run and replaced by a long
  one (with its ``rel_stderr``) where the QMC missed its tolerance (tiny p); closed forms for
  zero mean and ``n <= 3``:
  ``1/2``, ``1/4 + asin(rho)/(2 pi)``, ``1/8 + sum_{i<j} asin(rho_ij)/(4 pi)``.
- ``"minimax-tilting"``: Botev (2017) importance sampler (``_tilting``); unbiased for P, with
  a relative standard error, accurate for log P far below -20.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas, lapack
from scipy.special import log_ndtr

from . import _ep
from ._tilting import minimax_tilting_log_orthant

__all__ = ["OrthantResult", "log_orthant_probability", "ep_posterior", "ep_predictive",
           "pac_bayes_bound",
           "EXACT_MAX_DIM"]

EXACT_MAX_DIM = 20  # Genz QMC in scipy: seconds and ~1e-6 relative error up to here
_EXACT_MAXPTS_PER_DIM = 100_000  # bounds the QMC time for tiny p (where it stops short)
_EXACT_CHECK_SAMPLES = 20_000  # minimax-tilting check of every QMC result (n > 3)
_EXACT_FALLBACK_SAMPLES = 200_000  # tilting when the QMC result fails the check (~1e-3 rel.)
_JITTER_START = 1e-10  # times mean(diag K)
_JITTER_MAX = 1e-3
METHODS = ("ep", "exact", "minimax-tilting")


@dataclass(frozen=True)
class OrthantResult:
    """``log_p`` = ln P(sign(z) = signs); ``rel_stderr``: relative standard error of ``exp(log_p)``
    (tilting, and 'exact' where it fell back to tilting; 0 for closed forms; None for EP
    and for scipy's QMC); ``jitter``: added to the
    diagonal of K (absolute); ``n_iter``: EP sweeps / tilting solver evaluations;
    ``converged``: EP fixed point / tilting equations solved; ``info``: method extras."""

    log_p: float
    method: str
    rel_stderr: float | None = None
    jitter: float = 0.0
    n_iter: int | None = None
    converged: bool | None = None
    info: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def p(self) -> float:
        return float(np.exp(self.log_p))


# ----------------------------------------------------------------------------- validation


def _check_K(K, name: str = "K") -> np.ndarray:
    """K as float64, validated and symmetrised: ``0.5 (K + K^T)`` (K itself when exactly
    symmetric, which that formula would return bit for bit). The checks run over blocks of
    rows, so that a 10^4 x 10^4 K gets no n x n temporaries (EP's memory peak)."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty square matrix, got shape {K.shape}")
    n = K.shape[0]
    step = max(1, (1 << 22) // n)  # 4M entries (32 MB) per block
    finite, scale, asym = True, 0.0, 0.0
    for i in range(0, n, step):
        rows = K[i:i + step]
        finite = finite and bool(np.all(np.isfinite(rows)))
        if not finite:
            break
        scale = max(scale, float(np.max(np.abs(rows))))
        asym = max(asym, float(np.max(np.abs(rows - K[:, i:i + step].T))))
    if not finite:
        raise ValueError(f"{name}: expected finite entries")
    if not np.all(np.diag(K) > 0):
        raise ValueError(f"{name}: expected a strictly positive diagonal")
    if asym > 1e-8 * scale:
        raise ValueError(f"{name}: expected a symmetric matrix (max |K - K^T| = {asym:.3g})")
    if asym == 0.0:
        return K
    out = K + K.T
    out *= 0.5
    return out


def _check_signs(signs, n: int, name: str = "signs") -> np.ndarray:
    s = np.asarray(signs)
    if s.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {s.shape}")
    if s.dtype == bool:
        return np.where(s, 1.0, -1.0)
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric or boolean array, got dtype {s.dtype}")
    vals = set(np.unique(s).tolist())
    if vals <= {-1, 1}:
        return s.astype(np.float64)
    if vals <= {0, 1}:
        return 2.0 * s.astype(np.float64) - 1.0
    raise ValueError(f"{name}: expected values in {{-1, +1}} or {{0, 1}} (0 means negative), "
                     f"got {sorted(vals)[:5]}")


def _check_mean(mean, n: int, name: str = "mean") -> np.ndarray:
    if mean is None:
        return np.zeros(n)
    m = np.asarray(mean, dtype=np.float64)
    if m.ndim == 0:
        m = np.full(n, float(m))
    if m.shape != (n,) or not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: expected a finite scalar or shape ({n},), got shape {m.shape}")
    return m


def _psd_cholesky(K):
    """Cholesky of K, adding escalating diagonal jitter only if it fails. -> (L, jitter)."""
    jitter = 0.0
    scale = float(np.mean(np.diag(K)))
    rel = _JITTER_START
    while True:
        # LAPACK's dpotrf as np.linalg.cholesky, on one copy of K (numpy's held two: 2.4 GB
        # of EP's peak at n = 10^4). K is symmetric here, so its buffer read as Fortran is K.
        Kj = _add_jitter(K, jitter)
        L, info = lapack.dpotrf(Kj.T, lower=1, clean=1, overwrite_a=int(Kj is not K))
        del Kj
        if info == 0:
            return L, jitter
        if info < 0:  # pragma: no cover - argument error, not an indefinite K
            raise RuntimeError(f"dpotrf: illegal argument {-info}")
        del L
        if rel > _JITTER_MAX:
            raise ValueError(f"K: expected a positive semi-definite matrix; Cholesky failed "
                             f"even with jitter {jitter:.3g}")
        jitter = rel * scale
        rel *= 10.0


def _add_jitter(K, jitter: float):
    if not jitter:
        return K
    Kj = K.copy()  # not K + jitter * eye(n): that is another n^2 temporary
    Kj.flat[:: len(K) + 1] += jitter
    return Kj


def _pop_opts(opts: dict, allowed: dict, method: str) -> dict:
    unknown = set(opts) - set(allowed)
    if unknown:
        raise ValueError(f"method={method!r}: unknown option(s) {sorted(unknown)}; expected a "
                         f"subset of {sorted(allowed)}")
    return {**allowed, **opts}


def _rng(seed, rng) -> np.random.Generator:
    if rng is not None and seed is not None:
        raise ValueError("seed, rng: expected at most one of them")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- exact


def _exact(K, s, m, *, seed=0, rng=None, releps=1e-4, maxpts=None):
    from scipy.stats import multivariate_normal

    n = len(s)
    if n > EXACT_MAX_DIM:
        raise ValueError(f"method='exact': expected n <= {EXACT_MAX_DIM} (scipy's QMC "
                         f"multivariate_normal.cdf), got n = {n}; use 'ep' or 'minimax-tilting'")
    Kf = K * np.outer(s, s)
    mf = s * m
    sd = np.sqrt(np.diag(Kf))
    R = Kf / np.outer(sd, sd)
    if n == 1:
        return float(log_ndtr(mf[0] / sd[0])), 0.0, "closed form"
    if n <= 3 and not np.any(mf):
        a = np.arcsin(np.clip(R[np.triu_indices(n, 1)], -1.0, 1.0))
        p = 0.25 + a[0] / (2 * np.pi) if n == 2 else 0.125 + np.sum(a) / (4 * np.pi)
        return (float(np.log(p)) if p > 0 else -np.inf), 0.0, "closed form"
    gen = _rng(seed, rng)
    # P(z' > 0) = P(-z' < 0) = CDF at 0 of N(-mf, R) on the standardised scale. scipy's QMC only
    # honours an absolute tolerance, so a rough pass sets it for a second, relative one.
    kw = dict(mean=-mf / sd, cov=R, allow_singular=True, rng=gen,
              maxpts=int(maxpts if maxpts is not None else _EXACT_MAXPTS_PER_DIM * n))
    p = float(multivariate_normal.cdf(np.zeros(n), abseps=1e-3, **kw))
    if p > 0:
        p = float(multivariate_normal.cdf(np.zeros(n), abseps=releps * p, **kw))
    # scipy's QMC stops at maxpts whatever its error: for tiny p it can be off by a factor of
    # several (measured: a 16-dim orthant of the n = 4 ReLU NNGP, parity, p = 6.0e-15 by
    # tilting, came out 1.1e-15 to 2.7e-15 over seeds; scipy's own error estimate was 50-75 %
    # of p).  Minimax tilting (unbiased, bounded relative error, ~20 ms here) checks it; when
    # they disagree beyond 5 of tilting's standard errors, tilting with more samples is used.
    chk = minimax_tilting_log_orthant(Kf, -mf, n_samples=_EXACT_CHECK_SAMPLES, rng=gen)
    if p > 0 and abs(np.log(p) - chk["log_p"]) <= 5.0 * chk["rel_stderr"] + 10.0 * releps:
        return float(np.log(p)), None, "scipy qmc"
    t = minimax_tilting_log_orthant(Kf, -mf, n_samples=_EXACT_FALLBACK_SAMPLES, rng=gen)
    return float(t["log_p"]), float(t["rel_stderr"]), "minimax tilting (scipy qmc missed releps)"


# ----------------------------------------------------------------------------- dispatcher


def log_orthant_probability(K, signs, method: str = "ep", *, mean=None, **opts) -> OrthantResult:
    """``ln P(sign(z) = signs)`` for ``z ~ N(mean, K)``; ``signs`` in {-1,+1} or {0,1} (0 = negative).

    Options by method (keyword-only):

    - ``"ep"``: see ``ep_posterior``: ``damping``, ``tol`` (1e-4), ``max_iter``, ``variant``
      ("auto" | "sequential" | "parallel"), ``parallel_threshold`` (256), ``blas_threads`` (1),
      ``precision`` ("mixed" | "float64").
    - ``"exact"``: ``seed`` (0) or ``rng``, ``releps`` (1e-4, target relative error), ``maxpts``
      (1e5 * n: caps the time; tiny p may then miss ``releps``); n <= EXACT_MAX_DIM.
    - ``"minimax-tilting"``: ``n_samples`` (10_000), ``seed`` (None) or ``rng``; O(n^3) setup
      in Python plus O(n_samples n^2), so practical up to a few hundred dimensions.

    Cholesky of K is attempted first; only if it fails is ``jitter * I`` added (from 1e-10
    times mean(diag K), x10 each time), and the amount is reported in ``result.jitter``.
    """
    K = np.asarray(K, dtype=np.float64)
    if _has_zero_variance(K):
        return _with_zero_variance(K, signs, method, mean, opts)
    K = _check_K(K)
    n = K.shape[0]
    s = _check_signs(signs, n)
    m = _check_mean(mean, n)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    if method == "ep":
        o = _pop_opts(opts, dict(damping=None, tol=1e-4, max_iter=None, variant="auto",
                                 parallel_threshold=_ep.PARALLEL_THRESHOLD,
                                 blas_threads=1, precision="mixed"), method)
        st = ep_posterior(K, s, mean=m, **o)
        return OrthantResult(log_p=st.log_Z, method="ep", jitter=st.jitter, n_iter=st.n_iter,
                             converged=st.converged,
                             info=dict(variant=st.variant, residual=st.residual,
                                       history=st.history))
    _, jitter = _psd_cholesky(K)
    Kj = _add_jitter(K, jitter)
    if method == "exact":
        o = _pop_opts(opts, dict(seed=0, rng=None, releps=1e-4, maxpts=None), method)
        seed = None if o["rng"] is not None else o["seed"]
        log_p, rel, how = _exact(Kj, s, m, seed=seed, rng=o["rng"], releps=o["releps"],
                                 maxpts=o["maxpts"])
        return OrthantResult(log_p=log_p, method="exact", rel_stderr=rel, jitter=jitter,
                             converged=True, info=dict(how=how))
    o = _pop_opts(opts, dict(n_samples=10_000, seed=None, rng=None), method)
    n_samples = o["n_samples"]
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples: expected an int >= 2, got {n_samples!r}")
    gen = _rng(o["seed"], o["rng"])
    r = minimax_tilting_log_orthant(Kj * np.outer(s, s), -s * m, n_samples=int(n_samples), rng=gen)
    return OrthantResult(log_p=r["log_p"], method="minimax-tilting", rel_stderr=r["rel_stderr"],
                         jitter=jitter, n_iter=r["n_iter"], converged=r["converged"],
                         info=dict(log_upper_bound=r["log_upper_bound"]))


def _has_zero_variance(K: np.ndarray) -> bool:
    """A finite square K with some ``K_ii = 0`` (checked before ``_check_K``, which refuses it)."""
    return bool(K.ndim == 2 and K.shape[0] == K.shape[1] and K.shape[0]
                and np.all(np.isfinite(K)) and np.any(np.diag(K) == 0))


def _zero_variance_split(K, S, m):
    """(zero, ok): the coordinates with ``K_ii = 0`` (constant, ``z_i = m_i``, negative when 0:
    labels are ``f(x) > 0``) and, per row of the sign patterns ``S``, whether its signs there
    agree (else its probability is 0)."""
    zero = np.diag(K) == 0
    if np.any(K[zero] != 0):
        raise ValueError("K: expected a positive semi-definite matrix; a row with zero variance "
                         "has a non-zero covariance")
    return zero, np.all((S[:, zero] > 0) == (m[zero] > 0), axis=1)


def _with_zero_variance(K, signs, method, mean, opts) -> OrthantResult:
    """Coordinates with ``K_ii = 0`` are constant, ``z_i = mean_i``; their sign follows the
    package's threshold (a network's label is ``f(x) > 0``, so ``z_i = 0`` is negative).  The
    probability is 0 if one of them has the other sign, else the orthant probability of the
    remaining coordinates (their rows and columns of K must be 0: K is PSD)."""
    n = K.shape[0]
    s = _check_signs(signs, n)
    m = _check_mean(mean, n)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    zero, ok = _zero_variance_split(K, s[None, :], m)
    info = dict(n_zero_variance=int(zero.sum()))
    if not ok[0]:
        return OrthantResult(log_p=-np.inf, method=method, rel_stderr=0.0, converged=True,
                             info=dict(info, how="a zero-variance coordinate has the other sign"))
    if zero.all():
        return OrthantResult(log_p=0.0, method=method, rel_stderr=0.0, converged=True, info=info)
    keep = ~zero
    r = log_orthant_probability(K[np.ix_(keep, keep)], s[keep], method, mean=m[keep], **opts)
    return dataclasses.replace(r, info={**r.info, **info})


# ----------------------------------------------------------------------------- EP posterior


def ep_posterior(K_SS, signs_S, *, mean=None, damping=None, tol: float = 1e-4, max_iter=None,
                 variant: str = "auto", parallel_threshold: int = _ep.PARALLEL_THRESHOLD,
                 blas_threads: int | None = 1, warm_start: bool = True,
                 precision: str = "mixed", verbose: bool = False) -> _ep.EPState:
    """EP approximation ``N(mu, Sigma)`` of ``p(f_S | sign(f_S) = signs_S)``, ``f_S ~ N(mean, K_SS)``.

    Returns an ``EPState`` (sites, posterior mean/marginal variances, ``log_Z`` = EP estimate of
    ``ln P(sign(f_S) = signs_S)``, ``jitter``, ``n_iter``, ``converged``). Jitter is added to
    K_SS only if its Cholesky fails (or, later, that of ``I + S^1/2 K S^1/2``, or a posterior
    variance comes out non-positive), escalating x10 from 1e-10 * mean(diag K).

    ``variant``: "sequential" (R&W Alg. 3.5), "parallel" (all sites from the current
    cavities, one Cholesky + one triangular inverse of ``B`` per sweep, 2n^3/3 flops), or
    "auto" (parallel for n > ``parallel_threshold``). ``damping`` in (0, 1]: None means 1 for
    sequential and an adaptive schedule starting at 0.5 for parallel. Converged when every
    site's tilted and posterior marginal moments agree to ``tol`` (mean in posterior-sd units
    and log-variance); ``tol=1e-4`` leaves ln Z within ~1e-6 of its fixed point in our tests.
    A warning is issued if ``max_iter`` (200 parallel / 50 sequential sweeps) is hit.
    ``warm_start``: parallel EP on ``n >= _ep.WARM_START_MIN`` points starts from the sites of
    EP on every other point (recursively; ``_ep.warm_start_sites``) instead of zero: the same
    fixed point and convergence test, fewer full-size sweeps (``n_iter`` counts those).
    ``precision``: "mixed" (default) runs the parallel variant's early sweeps, those with a
    residual >= ``_ep.SINGLE_ABOVE`` (1e-3), with a float32 Cholesky and inverse of B (half
    the time; the mean refined in float64) and the sweeps that decide convergence in float64:
    the same fixed point, damping and stopping rule (``_ep.run_ep``); "float64" runs every
    sweep in float64 (the path before). The jitter decision is float64's either way.

    Dense linear algebra runs with ``blas_threads`` BLAS threads (default 1: OpenBLAS's threaded
    Cholesky is 10-40x slower than its serial one on shared cores, ~1.8x faster on idle ones;
    None leaves BLAS alone). Measured on 2 cores (MNIST NNGP, benchmarks/bench_ep_scaling.py):
    n = 1000 / 5000 / 10000 took 0.4 s / 26 s / 183 s (13-15 sweeps) idle before the warm
    start, which leaves 9 full-size sweeps at 5000 and 10000 (1.29x less CPU time at 5000;
    ~140 s expected idle at 10000, not measured). Memory: K plus one n x n
    work matrix (the parallel variant inverts the factor in place and keeps that inverse):
    peak RSS of the whole benchmark process at n = 10000 1.92 GB (6.3 GB before). Idle, two
    BLAS threads, n = 10000: 69.8 s, 74.3 s and 73.0 s mixed against 99.0 s, 107.3 s and 114.6 s
    float64 (the same lock slots), 9 sweeps both ways (7 float32), log10 P(S) -615.95550084
    both ways; n = 5000: 13.1 s against 16.5 s.
    """
    K = _check_K(K_SS, "K_SS")
    n = K.shape[0]
    s = _check_signs(signs_S, n, "signs_S")
    m = _check_mean(mean, n)
    if variant not in ("auto", "sequential", "parallel"):
        raise ValueError(f"variant: expected 'auto', 'sequential' or 'parallel', got {variant!r}")
    if damping is not None and not 0 < damping <= 1:
        raise ValueError(f"damping: expected a number in (0, 1], got {damping!r}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    if precision not in ("mixed", "float64"):
        raise ValueError(f"precision: expected 'mixed' or 'float64', got {precision!r}")
    if not isinstance(warm_start, (bool, np.bool_)):
        raise ValueError(f"warm_start: expected True or False, got {warm_start!r}")
    if blas_threads is not None and (isinstance(blas_threads, bool) or
                                     not isinstance(blas_threads, (int, np.integer)) or blas_threads < 1):
        raise ValueError(f"blas_threads: expected a positive int or None, got {blas_threads!r}")
    with _blas_threads(blas_threads):
        return _ep_posterior(K, s, m, damping=damping, tol=tol, max_iter=max_iter, variant=variant,
                             parallel_threshold=parallel_threshold, verbose=verbose,
                             warm_start=bool(warm_start), precision=precision)


@contextlib.contextmanager
def _blas_threads(n):
    # OpenBLAS's threaded dpotrf is 10-40x SLOWER than its serial one when another process
    # holds a core (measured n=2000 on 2 cores: 2.8 s vs 0.07 s) and only ~1.8x faster on idle
    # cores, so EP defaults to one BLAS thread; blas_threads=None leaves BLAS alone.
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


def _ep_posterior(K, s, m, *, warm_start=False, **kw) -> _ep.EPState:
    n = K.shape[0]
    parallel = kw["variant"] == "parallel" or (kw["variant"] == "auto"
                                               and n > kw["parallel_threshold"])
    # EP itself only factorises B = I + S^1/2 K S^1/2 >= I, which can succeed on a slightly
    # indefinite K; one Cholesky of K (a third of a parallel sweep) makes the jitter policy the
    # same as for the other methods.
    jitter = _psd_cholesky(K)[1]  # not `_, jitter = ...`: that keeps the n x n factor alive
    scale = float(np.mean(np.diag(K)))
    rel = 10.0 * jitter / scale if jitter else _JITTER_START
    while True:
        Kj = _add_jitter(K, jitter)
        try:
            init = _ep.warm_start_sites(Kj, s, m, **kw) if warm_start and parallel else None
            post, tau, nu, lz, it, conv, var_name, resid, hist = _ep.run_ep(Kj, s, m, init=init,
                                                                             **kw)
            break
        except _ep._CholeskyFailed:
            if rel > _JITTER_MAX:
                raise ValueError(f"K_SS: expected a positive semi-definite matrix; EP failed even "
                                 f"with jitter {jitter:.3g}") from None
            jitter, rel = rel * scale, rel * 10.0
    if not conv:
        warnings.warn(f"EP did not converge in {it} sweeps (residual {resid:.2e} > tol); "
                      f"ln Z = {lz:.6g} is from the last sweep", RuntimeWarning, stacklevel=3)
    return _ep.EPState(tau=tau, nu=nu, mu=post.mu + m, var=post.var, alpha=post.alpha,
                       inv_chol_B=post.C, _chol_B=post.L, log_Z=lz, signs=s, mean=m, jitter=jitter, n_iter=it,
                       converged=conv, variant=var_name, residual=resid, history=hist)


def ep_predictive(K_SS, K_SE, K_EE, ep_state: _ep.EPState, *, mean_E=None):
    """Approximate posterior predictive ``f_E | sign(f_S) = s_S ~ N(mean_E, cov_E)`` (R&W Alg. 3.6):

    ``mean_E = m_E + K_ES alpha``, ``cov_E = K_EE - W^T W`` with ``W = L^-1 S^1/2 K_SE``.

    A function's conditional log-probability on E is then
    ``log_orthant_probability(cov_E, signs_E, mean=mean_E)``. ``K_SS`` must be the matrix the
    state was fitted on (its jitter is not needed: it lives in the factor ``chol_B``, or its
    inverse ``inv_chol_B``).
    """
    K_SS = np.asarray(K_SS, dtype=np.float64)
    n = ep_state.tau.shape[0]
    if K_SS.shape != (n, n):
        raise ValueError(f"K_SS: expected shape ({n}, {n}) to match ep_state, got {K_SS.shape}")
    K_SE = np.asarray(K_SE, dtype=np.float64)
    if K_SE.ndim != 2 or K_SE.shape[0] != n:
        raise ValueError(f"K_SE: expected shape ({n}, n_E), got {K_SE.shape}")
    n_E = K_SE.shape[1]
    K_EE = _check_K(K_EE, "K_EE")
    if K_EE.shape != (n_E, n_E):
        raise ValueError(f"K_EE: expected shape ({n_E}, {n_E}), got {K_EE.shape}")
    m_E = _check_mean(mean_E, n_E, "mean_E")
    from scipy.linalg import solve_triangular

    mean = m_E + K_SE.T @ ep_state.alpha
    W = np.sqrt(ep_state.tau)[:, None] * K_SE
    if ep_state._chol_B is not None:
        W = solve_triangular(ep_state._chol_B, W, lower=True, check_finite=False)
    else:  # parallel EP keeps L^-1 (what its sweeps computed), not L
        W = blas.dtrmm(1.0, ep_state.inv_chol_B, np.asfortranarray(W), lower=1, overwrite_b=1)
    cov = K_EE - W.T @ W
    return mean, 0.5 * (cov + cov.T)


# ----------------------------------------------------------------------------- PAC-Bayes


def pac_bayes_bound(log_p_S, m: int, delta: float = 0.01) -> float:
    """Generalisation-error bound of Valle-Perez et al. (2019) from the marginal likelihood:

    ``-ln(1 - eps) <= [ln(1/P(S)) + ln(2m/delta)] / (m - 1)``, solved for
    ``eps = 1 - exp(-[ln(1/P(S)) + ln(2m/delta)] / (m - 1))``. ``log_p_S = ln P(S) <= 0``,
    ``m`` = training-set size.
    """
    log_p_S = float(log_p_S)
    if not log_p_S <= 0:
        raise ValueError(f"log_p_S: expected ln P(S) <= 0, got {log_p_S!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
        raise ValueError(f"m: expected an int >= 2 (training-set size), got {m!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta: expected a confidence level in (0, 1), got {delta!r}")
    rhs = (-log_p_S + np.log(2.0 * m / delta)) / (m - 1)
    return float(-np.expm1(-rhs))
