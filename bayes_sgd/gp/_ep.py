"""Expectation propagation for a GP prior with Heaviside (noise-free probit) likelihoods.

Model: ``f ~ N(m, K)`` and ``p(y | f) = prod_i Theta(y_i f_i)``, so ``Z = P(sign(f) = y)``.
We run EP on ``g = f - m ~ N(0, K)`` with site likelihoods ``Theta(y_i (g_i + m_i))`` and
Gaussian sites ``t_i(g_i) ∝ exp(-tau_i g_i^2 / 2 + nu_i g_i)`` (Rasmussen & Williams 2006, Alg. 3.5).

Site update from the cavity ``N(mu_c, s_c^2)`` (R&W eqs. 3.56-3.59 with the probit noise -> 0):
``z = y (mu_c + m) / s_c``, ``Zhat = Phi(z)``, ``lam = N(z)/Phi(z)``, ``r = lam (z + lam)``,
``mu_hat = mu_c + y s_c lam``, ``s_hat^2 = s_c^2 (1 - r)``.

Posterior (R&W eq. 3.53 via ``B = I + S^1/2 K S^1/2``, ``L L^T = B``, ``V = L^-1 S^1/2 K``):
``Sigma = K - V^T V``, ``mu = Sigma nu``. Every ``tau_i >= 0`` (the Heaviside site is
log-concave), hence ``B >= I`` is always well conditioned for Cholesky and every cavity has
precision ``>= 1/K_ii`` (Schur complement of ``K^-1 + S``).

Variants: "sequential" is R&W Alg. 3.5 (rank-one update of Sigma after each site, O(n^2) per
site in a Python loop; fresh factorisation after each sweep). "parallel" updates every site
from the current cavities at once, damped, then refactorises once per sweep (O(n^3), all in
LAPACK). Its damping adapts: halved when the residual grows, x0.7 when the residual vector
reverses direction (oscillation), x1.5 (up to 1) otherwise. Both have the same fixed points.
Parallel sweeps far from the fixed point (residual >= ``SINGLE_ABOVE``) factorise B in float32
(``precision="mixed"``, the default; ``run_ep``): half the LAPACK time, the same fixed point,
damping and stopping rule, decided by float64 sweeps.

EP marginal likelihood (R&W eq. 3.65; written in natural parameters so that sites with
``tau_i -> 0`` cause no 0 * inf):

    ln Z_EP = sum_i ln Zhat_i + nu^T mu / 2 - sum_i ln L_ii
              - 1/2 sum_i (mu_i^2 / Sigma_ii - mu_c,i^2 / s_c,i^2) + 1/2 sum_i ln(1 + tau_i s_c,i^2)

(``ln|B| = 2 sum ln L_ii``, ``ln Zhat_i = log_ndtr(z_i)``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas, lapack
from scipy.special import erfcx, log_ndtr

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_CF_TERMS = 60  # continued fraction for z < -3: full float64 accuracy (checked against mpmath)

PARALLEL_THRESHOLD = 256  # above this size the one-Cholesky-per-sweep parallel EP is used
_MIN_DAMPING = 0.02
_GROW, _SHRINK = 1.5, 0.7  # adaptive damping factors of the parallel variant
_EXPLICIT_BELOW = 1e-6  # see _Posterior
_EXPLICIT_BELOW_SINGLE = 1e-4  # the same for a float32 factor (see _Posterior)
SINGLE_ABOVE = 1e-3  # mixed precision: float32 sweeps while the residual is >= this (run_ep)


class _CholeskyFailed(Exception):
    pass


@dataclass
class EPState:
    """Converged (or last) EP approximation ``q(f) = N(mu, Sigma)`` of ``p(f | sign(f) = y)``.

    ``tau``, ``nu``: site natural parameters (for ``g = f - mean``); ``mu``: posterior mean of
    ``f``; ``var``: posterior marginal variances; ``alpha = (K + S^-1)^-1 mu_tilde`` so that the
    predictive mean is ``m_E + K_ES alpha``; ``inv_chol_B``: ``L^-1`` for the lower Cholesky
    factor L of ``B = I + S^1/2 K S^1/2`` (lower triangle; parallel EP's last sweep computed
    it in place of L), ``chol_B``: L itself (the sequential variant keeps it; otherwise it is
    computed from ``inv_chol_B`` on first access, one more n x n array); ``log_Z``: EP
    estimate of ``ln P(sign(f) = y)``.
    """

    tau: np.ndarray
    nu: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    alpha: np.ndarray
    inv_chol_B: np.ndarray | None
    log_Z: float
    signs: np.ndarray
    mean: np.ndarray
    jitter: float
    n_iter: int
    converged: bool
    variant: str
    residual: float
    history: list = field(default_factory=list, repr=False)
    _chol_B: np.ndarray | None = field(default=None, repr=False)

    @property
    def chol_B(self) -> np.ndarray:
        if self._chol_B is None:
            L, info = lapack.dtrtri(self.inv_chol_B, lower=1)
            if info != 0:  # pragma: no cover - C came from an invertible factor
                raise _CholeskyFailed(f"dtrtri info={info}")
            self._chol_B = L  # upper triangle zero: C's is (the factor was cleaned)
        return self._chol_B


def trunc_moments(z):
    """``(ln Phi(z), lam, r, 1 - r)`` with ``lam = N(z)/Phi(z)``, ``r = lam (z + lam)``.

    ``1 - r`` is the variance ratio of a standard normal truncated to ``(-z, inf)``; it tends
    to ``1/z^2`` as ``z -> -inf``, where ``1 - lam (z + lam)`` cancels catastrophically, so for
    ``z < -3`` we use the Laplace continued fraction of the Mills ratio,
    ``Phi(-x)/N(x) = 1/(x + 1/(x + 2/(x + 3/(x + ...))))``: with tails ``T_1, T_2`` of it,
    ``z + lam = T_1`` and ``1 - r = (T_2 - T_1) / (x + T_2)``.
    """
    z = np.asarray(z, dtype=np.float64)
    log_phi = log_ndtr(z)
    lam = _SQRT_2_OVER_PI / erfcx(-z / np.sqrt(2.0))
    r = lam * (z + lam)
    omr = 1.0 - r
    tail = z < -3.0
    if np.any(tail):
        x = -z[tail]
        t = np.zeros_like(x)
        for k in range(_CF_TERMS, 1, -1):
            t = k / (x + t)
        t2 = t
        t1 = 1.0 / (x + t2)
        omr_t = (t2 - t1) / (x + t2)
        omr[tail] = omr_t
        r[tail] = 1.0 - omr_t
    return log_phi, lam, r, omr


def _sites_from_posterior(tau, nu, mu_g, var, y, m, tau_floor):
    """Cavities, tilted moments and the undamped site targets for every site at once."""
    tau_c = np.maximum(1.0 / var - tau, tau_floor)  # >= 1/K_ii exactly; guards round-off
    nu_c = mu_g / var - nu
    mu_c = nu_c / tau_c
    sd_c = 1.0 / np.sqrt(tau_c)
    z = y * (mu_c + m) / sd_c
    log_zhat, lam, r, omr = trunc_moments(z)
    tau_new = tau_c * r / omr
    nu_new = tau_c * (mu_c * r + y * sd_c * lam) / omr
    mu_hat = mu_c + y * sd_c * lam
    # fixed-point residual: tilted vs current marginal moments, in posterior-sd units
    rvec = np.concatenate([(mu_hat - mu_g) / np.sqrt(var), np.log(omr / (tau_c * var))])
    return dict(tau_c=tau_c, mu_c=mu_c, log_zhat=log_zhat, tau_new=tau_new, nu_new=nu_new,
                rvec=rvec, resid=float(np.max(np.abs(rvec))))


class _Posterior:
    """Posterior of g for given sites from one Cholesky and one triangular inverse of B.

    With ``L L^T = B`` and ``C = L^-1`` (dtrtri, n^3/3 flops; a triangular solve for
    ``V = L^-1 S^1/2 K`` would cost n^3), ``Sigma = S^-1/2 (I - B^-1) S^-1/2`` gives
    ``Sigma_ii = (1 - b_i) / tau_i`` with ``b_i = (B^-1)_ii = ||C e_i||^2``. That cancels when
    ``tau_i Sigma_ii = 1 - b_i`` is tiny (uninformative sites), so below ``_EXPLICIT_BELOW``
    those columns use ``Sigma_ii = K_ii - ||C S^1/2 K e_i||^2``, which only needs the columns
    of C for informative sites. (Measured: the two forms agree to 1e-9 relative at
    ``1 - b_i = 1e-6`` and to 1e-12 above 1e-3.)

    ``single``: B, its Cholesky factor and C in float32 (``spotrf``/``strtri``, ~2x the speed
    of float64's here; one float32 work matrix, half the memory). ``b_i`` then carries
    float32's error (~4e-7 on MNIST at n = 2,500, ||B|| up to 4e5), so the explicit form
    takes over below ``1 - b_i = 1e-4`` (at 1e-3: 852 explicit columns at n = 10^4, ~1.5 s
    a sweep, for no change in the iteration); the mean gets one step of iterative refinement
    in float64 (``r = S^1/2 K nu - B w``: one K v product), which brings it from ~1.7e-3 to
    ~1.4e-7 posterior sds of float64's. Measured there against float64's posterior at every
    sweep's sites: the residual vector within 9e-6, log-variances within 1.8e-3 (sites with
    1 - b_i just above 1e-4; the residual's log-variance term, ``log(omr / b_i)``, barely
    sees the error).
    """

    def __init__(self, K, tau, nu, *, keep_L: bool = True, single: bool = False):
        n = K.shape[0]
        sw = np.sqrt(tau)
        L = _chol_B(K, sw, single=single)
        logdet_half = float(np.sum(np.log(np.diag(L).astype(np.float64))))
        # keep_L=False inverts in place: one n x n work matrix besides K (EP's memory at
        # |S| = 10^4); the last sweep's C is what EPState keeps (``inv_chol_B``): the
        # predictive needs L^-1 only, so L is not rebuilt (before: one more Cholesky, 4.4 s
        # at |S| = 10^4).
        trtri = lapack.strtri if single else lapack.dtrtri
        C, info = trtri(L, lower=1, overwrite_c=int(not keep_L))
        if info != 0:
            raise _CholeskyFailed(f"{'s' if single else 'd'}trtri info={info}")
        if not keep_L:
            L = None
        one_minus_b = 1.0 - _col_sq_norms(C)
        explicit = ~(one_minus_b >= (_EXPLICIT_BELOW_SINGLE if single else _EXPLICIT_BELOW))
        var = np.empty(n)
        implicit = ~explicit
        var[implicit] = one_minus_b[implicit] / tau[implicit]
        T = np.flatnonzero(explicit)
        if T.size:
            A = np.flatnonzero(sw > 0)  # rows of S^1/2 K that are not identically zero
            # (all of C when every row counts: C[:, A] would be an n x n copy)
            CA = C if A.size == n else C[:, A]
            var[T] = K[T, T]
            # W = CA S^1/2 K[A, T] by blocks of T (W is n x |T|: n x n before the first sweep)
            step = max(1, (1 << 22) // n)
            for j in range(0, T.size if A.size else 0, step):
                Tj = T[j:j + step]
                W = CA @ np.multiply(sw[A, None], K[np.ix_(A, Tj)], dtype=C.dtype)
                var[Tj] -= _col_sq_norms(W)
        if not np.all(var > 0) or not np.all(np.isfinite(var)):
            raise _CholeskyFailed("non-positive posterior variance")
        Knu = K @ nu
        # w = B^-1 S^1/2 K nu; mu = Sigma nu = K nu - K S^1/2 w; alpha = nu - S^1/2 w
        # (R&W Alg. 3.6) so that predictive means are K_ES alpha
        v = sw * Knu
        w = (C.T @ (C @ v.astype(C.dtype))).astype(np.float64)
        if single:
            # one step of iterative refinement (residual of B w = v in float64: one K v
            # product): float32's C alone left mu off by 1.7e-3 posterior sds (MNIST, 2,500)
            r = v - w - sw * (K @ (sw * w))
            w += (C.T @ (C @ r.astype(C.dtype))).astype(np.float64)
        self.mu = Knu - K @ (sw * w)
        self.alpha = nu - sw * w
        self.L, self.C, self.sw, self.var = L, C, sw, var
        self.logdet_half = logdet_half
        self.single = single


def _col_sq_norms(C):
    """``sum_i C_ij^2`` per column, accumulated in float64 (float32 C: by blocks of rows)."""
    if C.dtype == np.float64:
        return np.einsum("ij,ij->j", C, C)
    out = np.zeros(C.shape[1])
    for i in range(0, C.shape[0], 256):  # float32 sums of 256 terms: ~1e-6 relative at worst
        out += np.einsum("ij,ij->j", C[i:i + 256], C[i:i + 256])
    return out


class _Marginals:
    """What the first sweep needs of a ``_Posterior`` (``mu``, ``var``) when they are known
    without factorising: the prior at zero sites, or ``warm_start_sites``' values."""

    def __init__(self, mu, var):
        self.mu, self.var = mu, var
        self.L = self.C = None
        self.single = False


WARM_START_MIN = 2048  # parallel EP on n >= this starts from the sites of EP on half the points


def warm_start_sites(K, y, m, *, min_size=None, **kw):
    """Starting point ``(tau, nu, mu, var)`` for parallel EP on all n points: the converged
    sites of EP on every other point (itself warm-started the same way while n / 2 >=
    ``min_size``), zero sites elsewhere, and the posterior marginals of g at those sites.

    Parallel EP converges linearly and spends most sweeps bringing every site from zero to
    near its fixed point; on half the points a sweep costs 1/8 as much, and the full EP then
    starts with half its sites near their values. The starting marginals need no
    factorisation of the full B: with zero sites on the other half T, the posterior on the
    half A is the half's EP posterior, and on T it is that posterior's predictive
    (``mu_T = K_TA alpha``, ``var_T = K_TT - ||L^-1 S^1/2 K_AT||^2``, n^3/8 flops, R&W Alg.
    3.6). Measured on the MNIST NNGP (``benchmarks/bench_ep_scaling.py``): see there. Returns
    None below ``min_size`` (default ``WARM_START_MIN``; start from zero). ``kw``: passed to
    ``run_ep`` for the half.
    """
    n = K.shape[0]
    if min_size is None:
        min_size = WARM_START_MIN
    if n < min_size:
        return None
    A = slice(0, n, 2)  # every other point: a subset that does not follow the data's order
    T = slice(1, n, 2)
    Kh, yh, mh = K[A, A], y[A], m[A]
    init = warm_start_sites(Kh, yh, mh, min_size=min_size, **kw)
    post, tau_h, nu_h, *_ = run_ep(Kh, yh, mh, init=init, **kw)
    tau, nu, mu, var = np.zeros(n), np.zeros(n), np.empty(n), np.empty(n)
    tau[A], nu[A], mu[A], var[A] = tau_h, nu_h, post.mu, post.var
    KAT = K[A, T]
    mu[T] = post.alpha @ KAT
    var_T = np.diag(K)[T].copy()
    step = max(1, (1 << 22) // max(1, Kh.shape[0]))  # column blocks of L^-1 S^1/2 K_AT
    for j in range(0, var_T.size, step):
        W = post.sw[:, None] * KAT[:, j:j + step]
        # L^-1 W with the inverse the half's last sweep left (trmm, the flops of a trsm)
        W = blas.dtrmm(1.0, post.C, W, lower=1, overwrite_b=1)
        var_T[j:j + step] -= np.einsum("ij,ij->j", W, W)
    if not np.all(var_T > 0):
        return tau * 0.0, nu * 0.0, np.zeros(n), np.diag(K).copy()  # round-off: start cold
    var[T] = var_T
    return tau, nu, mu, var


def _chol_B(K, sw, *, single: bool = False):
    """Lower Cholesky factor of ``B = I + S^1/2 K S^1/2`` (one new n x n array; float32 when
    ``single``, then B is rounded from float64 entries)."""
    n = K.shape[0]
    # K is symmetric, so the C-ordered buffer read as Fortran is the same matrix: no copy.
    if single:
        # by blocks of rows into the float32 array: the ufunc's own casting (dtype=float32 on
        # all of K) took 2.5x as long here
        B = np.empty((n, n), np.float32)
        step = max(1, (1 << 18) // n)
        for i in range(0, n, step):
            np.multiply(K[i:i + step], sw[i:i + step, None], out=B[i:i + step],
                        casting="same_kind")
        B *= sw[None, :].astype(np.float32)
    else:
        B = np.multiply(K, sw[:, None])
        B *= sw[None, :]
    B.flat[:: n + 1] += 1.0
    potrf = lapack.spotrf if single else lapack.dpotrf
    L, info = potrf(B.T, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise _CholeskyFailed(f"{'s' if single else 'd'}potrf info={info}")
    return L


def _log_z(post: _Posterior, tau, nu, s) -> float:
    mu, var = post.mu, post.var
    return float(np.sum(s["log_zhat"]) + 0.5 * nu @ mu - post.logdet_half
                 - 0.5 * np.sum(mu**2 / var - s["mu_c"] ** 2 * s["tau_c"])
                 + 0.5 * np.sum(np.log1p(tau / s["tau_c"])))


def run_ep(K, y, m, *, damping=None, tol=1e-4, max_iter=None, variant="auto",
           parallel_threshold=PARALLEL_THRESHOLD, verbose=False, init=None,
           precision="mixed"):
    """EP for ``P(sign(f) = y)``, ``f ~ N(m, K)``; K must already include any jitter.

    ``variant``: "sequential" (R&W Alg. 3.5, rank-one updates, O(n^2) per site),
    "parallel" (all sites updated from the current cavities, then one Cholesky per sweep),
    or "auto" (parallel when n > parallel_threshold). Converged when the largest discrepancy
    between tilted and posterior marginal moments (mean in sd units, log-variance) < ``tol``.
    ``init``: starting sites ``(tau, nu)`` (default: zero, i.e. the prior), or ``(tau, nu, mu,
    var)`` with the posterior marginals of g at those sites (``warm_start_sites``); the fixed
    point does not depend on them, the number of sweeps does.
    ``precision``: "mixed" (parallel variant: sweeps factorise B in float32 while the residual
    is >= ``SINGLE_ABOVE``, see below) or "float64" (every sweep in float64).
    Raises ``_CholeskyFailed`` so the caller can escalate jitter.

    Mixed precision: the early sweeps only move the sites towards the fixed point, so their
    posterior need not be float64; a float32 Cholesky + inverse of B takes half the time of
    float64's. The mean is refined once in float64 (``_Posterior``), which leaves the
    residual within ~1e-5 of float64's (measured on the MNIST NNGP), far below
    ``SINGLE_ABOVE``. The sweeps that decide convergence are float64: a float32 posterior
    never ends the iteration, and float32 stops for good (i) once the residual is below
    ``max(SINGLE_ABOVE, 10 tol)``, (ii) when a float32 Cholesky or variance fails, or (iii)
    when the residual has not reached a new minimum for two sweeps (one rise is the damping
    schedule's business: float64 EP has it too). So the fixed point, the damping rule and the
    stopping rule are float64's; the path to it differs from float64's by float32's error.
    """
    if precision not in ("mixed", "float64"):
        raise ValueError(f"precision: expected 'mixed' or 'float64', got {precision!r}")
    n = K.shape[0]
    if variant == "auto":
        variant = "parallel" if n > parallel_threshold else "sequential"
    adapt = damping is None
    if damping is None:
        damping = 0.5 if variant == "parallel" else 1.0
    if max_iter is None:
        max_iter = 200 if variant == "parallel" else 50
    tau_floor = 1.0 / np.diag(K)
    tau = np.zeros(n) if init is None else np.array(init[0], np.float64)
    nu = np.zeros(n) if init is None else np.array(init[1], np.float64)
    keep_L = variant == "sequential"  # parallel: C = L^-1 in place of L (EPState.inv_chol_B)
    if not keep_L and (init is None or len(init) == 4):
        # zero sites: the posterior is the prior (B = I; the factorisation would give exactly
        # these values at the cost of a sweep, 2n^3/3 flops), or warm_start_sites' marginals
        post = (_Marginals(np.zeros(n), np.diag(K).copy()) if init is None
                else _Marginals(np.array(init[2], np.float64), np.array(init[3], np.float64)))
    else:
        post = _Posterior(K, tau, nu, keep_L=keep_L)
    s = _sites_from_posterior(tau, nu, post.mu, post.var, y, m, tau_floor)
    history = []
    converged = False
    it = 0
    delta = float(damping)
    single = precision == "mixed" and variant == "parallel"
    switch = max(SINGLE_ABOVE, 10.0 * tol)
    best, stalled = np.inf, 0
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        if variant == "parallel":
            tau = tau + delta * (s["tau_new"] - tau)
            nu = nu + delta * (s["nu_new"] - nu)
        else:
            _sequential_sweep(K, tau, nu, post, y, m, delta, tau_floor)
        # The old factors go first: two posteriors alive at once were 4 of the 7 n x n
        # matrices of the n = 10^4 peak. Sequential: fresh factorisation, no rank-one drift.
        post = None
        single = single and s["resid"] >= switch
        if single:
            try:
                post = _Posterior(K, tau, nu, keep_L=keep_L, single=True)
            except _CholeskyFailed:  # float32 too coarse for this B: float64 from now on
                single = False
        if post is None:
            post = _Posterior(K, tau, nu, keep_L=keep_L)
        s_new = _sites_from_posterior(tau, nu, post.mu, post.var, y, m, tau_floor)
        lz = _log_z(post, tau, nu, s_new)
        history.append((it, lz, s_new["resid"], delta, time.perf_counter() - t0,
                        "float32" if single else "float64"))
        if verbose:
            print(f"EP[{variant}] it={it} logZ={lz:.6f} resid={s_new['resid']:.2e} "
                  f"damping={delta:.3f}{' (float32)' if single else ''}")
        if s_new["resid"] < tol and not single:
            converged = True
            break
        if single:
            stalled = 0 if s_new["resid"] < best else stalled + 1
            best = min(best, s_new["resid"])
            single = stalled < 2
        if adapt and variant == "parallel":
            # Parallel updates double-count strongly correlated sites and can overshoot: damp
            # harder when the residual grows or flips direction (oscillation), relax towards
            # undamped updates while it shrinks smoothly.
            cos = float(s_new["rvec"] @ s["rvec"]) / (
                np.linalg.norm(s_new["rvec"]) * np.linalg.norm(s["rvec"]) + 1e-300)
            if s_new["resid"] > s["resid"]:
                delta = max(0.5 * delta, _MIN_DAMPING)
            elif cos < 0:
                delta = max(_SHRINK * delta, _MIN_DAMPING)
            else:
                delta = min(_GROW * delta, 1.0)
        s = s_new
    if post.single:  # max_iter ran out on a float32 sweep: the state returned is float64's
        post = None
        post = _Posterior(K, tau, nu, keep_L=keep_L)
        s_new = _sites_from_posterior(tau, nu, post.mu, post.var, y, m, tau_floor)
        lz = _log_z(post, tau, nu, s_new)
    return post, tau, nu, lz, it, converged, variant, s_new["resid"], history


def _sequential_sweep(K, tau, nu, post: _Posterior, y, m, delta, tau_floor):
    """One sweep of R&W Alg. 3.5 in place on (tau, nu); Sigma kept by rank-one updates."""
    n = K.shape[0]
    Sigma = np.asfortranarray(K - _v_t_v(K, post))
    mu = post.mu.copy()
    for i in range(n):
        sii = Sigma[i, i]
        tc = max(1.0 / sii - tau[i], tau_floor[i])
        nc = mu[i] / sii - nu[i]
        mc = nc / tc
        sdc = 1.0 / np.sqrt(tc)
        z = y[i] * (mc + m[i]) / sdc
        _, lam, r, omr = trunc_moments(np.array([z]))
        lam, r, omr = lam[0], r[0], omr[0]
        t_new = tau[i] + delta * (tc * r / omr - tau[i])
        n_new = nu[i] + delta * (tc * (mc * r + y[i] * sdc * lam) / omr - nu[i])
        dt, dn = t_new - tau[i], n_new - nu[i]
        tau[i], nu[i] = t_new, n_new
        c = dt / (1.0 + dt * sii)
        si = Sigma[:, i].copy()
        mu += si * (dn / (1.0 + dt * sii) - c * mu[i])
        Sigma = blas.dger(-c, si, si, a=Sigma, overwrite_a=1)


def _v_t_v(K, post: _Posterior):
    V = post.C @ (post.sw[:, None] * K)  # only used for n <= parallel_threshold
    return V.T @ V
