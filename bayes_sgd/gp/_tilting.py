"""Botev (2017) minimax exponential tilting for Gaussian orthant probabilities.

Estimates ``P(z > l)`` (componentwise) for ``z ~ N(0, Sigma)``; the general two-sided
``l < z < u`` of the paper specialises with ``u = +inf`` (an orthant after a sign flip).

1. Cholesky ``Sigma = L L^T`` with Botev's greedy variable reordering (most constrained
   variable first, conditioning on the truncated means of those already placed), then
   rescale rows so that ``L`` has unit diagonal: ``z = L x``, ``x ~ N(0, I)``, and the constraint
   on coordinate k reads ``x_k > lt_k(x_<k) = l_k - sum_{j<k} L_kj x_j``.
2. Exponential tilting: sample ``x_k ~ N(mu_k, 1)`` truncated to ``x_k > lt_k``; the weight is
   ``w = exp(psi(x; mu))`` with
   ``psi(x; mu) = sum_k [ln Phibar(lt_k - mu_k) + mu_k^2 / 2 - x_k mu_k]``, and ``E[w] = P``.
   The minimax tilting ``mu`` solves ``max_x min_mu psi``: ``grad psi = 0`` in ``(x, mu)``
   (Botev eq. 9; ``x_d = mu_d = 0``), a smooth square system solved here by ``scipy.optimize.root``
   with its analytic Jacobian. ``psi* = psi(x*, mu*)`` is then an upper bound on ``ln P``.
3. ``ln P`` = log-mean-exp of ``ln w``; relative standard error ``std(w) / (mean(w) sqrt(n))``.
   Everything stays in log space, so probabilities far below 1e-300 are fine.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, root
from scipy.special import log_ndtr, ndtri_exp

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def _mills(t):
    """``N(t) / Phibar(t)`` = mean of N(0,1) truncated to (t, inf), stable for all t."""
    return np.exp(-0.5 * t**2 - _LOG_SQRT_2PI - log_ndtr(-t))


def cholperm(Sigma, l):
    """Botev's reordered Cholesky for the lower limits ``l`` (upper limits +inf).

    Returns ``(L, perm)`` with ``Sigma[perm][:, perm] = L L^T``; raises ValueError when
    Sigma is clearly not PSD.
    """
    S = np.array(Sigma, dtype=np.float64, copy=True)
    l = np.array(l, dtype=np.float64, copy=True)
    d = l.size
    L = np.zeros((d, d))
    z = np.zeros(d)
    perm = np.arange(d)
    tiny = np.finfo(float).eps
    for j in range(d):
        s = np.diag(S)[j:] - np.sum(L[j:, :j] ** 2, axis=1)
        s = np.sqrt(np.maximum(s, tiny))
        tl = (l[j:] - L[j:, :j] @ z[:j]) / s
        k = j + int(np.argmin(log_ndtr(-tl)))  # smallest marginal probability goes next
        if k != j:
            S[[j, k], :] = S[[k, j], :]
            S[:, [j, k]] = S[:, [k, j]]
            L[[j, k], :] = L[[k, j], :]
            l[[j, k]] = l[[k, j]]
            perm[[j, k]] = perm[[k, j]]
        s = S[j, j] - L[j, :j] @ L[j, :j]
        if s < -0.01 * S[j, j]:
            raise ValueError("K: expected a positive semi-definite covariance "
                             f"(pivot {j} has conditional variance {s:.3g})")
        L[j, j] = np.sqrt(max(s, tiny))
        L[j + 1:, j] = (S[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
        z[j] = _mills((l[j] - L[j, :j] @ z[:j]) / L[j, j])
    return L, perm


def _grad_psi(y, L, l):
    """Gradient of psi in (x_1..x_{d-1}, mu_1..mu_{d-1}) and its Jacobian (``L``: zero diagonal)."""
    d = l.size
    x = np.zeros(d)
    mu = np.zeros(d)
    x[: d - 1] = y[: d - 1]
    mu[: d - 1] = y[d - 1:]
    lt = l - mu - L @ x
    P = _mills(lt)
    dfdx = -mu[: d - 1] + (P @ L)[: d - 1]
    dfdm = mu - x + P
    grad = np.concatenate([dfdx, dfdm[: d - 1]])
    dP = -P**2 + lt * P  # d P / d mu_k (P depends on lt = l - mu - L x)
    DL = dP[:, None] * L
    mx = (-np.eye(d) + DL)[: d - 1, : d - 1]
    xx = (L.T @ DL)[: d - 1, : d - 1]
    J = np.block([[xx, mx.T], [mx, np.diag(1.0 + dP[: d - 1])]])
    return grad, J


def _psi(x, mu, L, l):
    lt = l - mu - L @ x
    return float(np.sum(log_ndtr(-lt) + 0.5 * mu**2 - x * mu))


def minimax_tilting_log_orthant(Sigma, l, *, n_samples: int, rng: np.random.Generator,
                                tol: float = 1e-10):
    """``ln P(z > l)``, ``z ~ N(0, Sigma)``, by minimax tilting. Returns a dict with
    ``log_p``, ``rel_stderr``, ``log_upper_bound`` (psi*), ``converged`` (tilting solve),
    ``n_iter`` (function evaluations of the solver)."""
    l = np.asarray(l, dtype=np.float64)
    d = l.size
    if d == 1:
        return dict(log_p=float(log_ndtr(-l[0] / np.sqrt(Sigma[0, 0]))), rel_stderr=0.0,
                    log_upper_bound=float(log_ndtr(-l[0] / np.sqrt(Sigma[0, 0]))),
                    converged=True, n_iter=0)
    Lfull, perm = cholperm(Sigma, l)
    D = np.diag(Lfull)
    L = Lfull / D[:, None] - np.eye(d)  # unit diagonal, then the diagonal removed
    lp = l[perm] / D

    fun = lambda y: _grad_psi(y, L, lp)  # noqa: E731
    sol = root(fun, np.zeros(2 * (d - 1)), jac=True, method="hybr", options={"xtol": tol})
    y = sol.x
    ok = bool(sol.success) and np.max(np.abs(sol.fun)) < 1e-6
    nfev = int(sol.nfev)
    if not ok:
        # hybr can stall on badly scaled problems; a trust-region least-squares solve of the
        # same equations is slower but robust.
        ls = least_squares(lambda v: fun(v)[0], y, jac=lambda v: fun(v)[1], method="trf",
                           xtol=tol, ftol=tol, gtol=tol, max_nfev=2000)
        y, nfev = ls.x, nfev + int(ls.nfev)
        ok = np.max(np.abs(ls.fun)) < 1e-6
    x = np.append(y[: d - 1], 0.0)
    mu = np.append(y[d - 1:], 0.0)
    psi_star = _psi(x, mu, L, lp)

    # importance sampling from the tilted sequential proposal
    Z = np.zeros((d, n_samples))
    logw = np.zeros(n_samples)
    for k in range(d - 1):
        tl = lp[k] - mu[k] - L[k, :k] @ Z[:k]
        logq = log_ndtr(-tl)  # ln P(N(0,1) > tl)
        # inverse-cdf draw of N(0,1) | > tl, in log space so deep tails stay exact
        u = rng.random(n_samples)
        e = -ndtri_exp(logq + np.log(u))
        Z[k] = mu[k] + e
        logw += logq + 0.5 * mu[k] ** 2 - mu[k] * Z[k]
    logw += log_ndtr(-(lp[d - 1] - L[d - 1] @ Z))
    wmax = np.max(logw)
    w = np.exp(logw - wmax)
    mean_w = np.mean(w)
    log_p = float(wmax + np.log(mean_w))
    rel = float(np.std(w, ddof=1) / (mean_w * np.sqrt(n_samples))) if n_samples > 1 else np.inf
    return dict(log_p=log_p, rel_stderr=rel, log_upper_bound=psi_star, converged=bool(ok),
                n_iter=nfev)
