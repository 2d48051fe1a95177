"""Sequential EP for many sign patterns under one covariance at once (numpy, float64).

``ln P(sign(z) = y_b)`` for ``z ~ N(m, K)`` and every row ``y_b`` of ``Y``: the GP scoring of
many functions (conditional mode: ``K = cov_E``, the EP predictive, one row per function on E;
joint mode: ``K`` over S and E). The algorithm is ``_ep.run_ep(..., variant="sequential")``
(R&W Alg. 3.5, damping 1, sites visited in order, the same site updates, the same
marginal-moment convergence test after every sweep and the same ln Z_EP), with the batch of
patterns as the leading array axis and two changes of linear-algebra bookkeeping that leave
the mathematics unchanged:

* Blocked rank-one updates. Within a block J of b consecutive sites, every updated column of
  Sigma lies in the span of ``G = Sigma_start[:, J]``, so the b updates
  ``Sigma <- Sigma - c_k s_k s_k^T`` add up to ``Sigma_start - G M G^T`` with a b x b matrix M
  built from the b x b block ``Sigma_start[J, J]`` alone (``s_k = G a_k``,
  ``a_k = e_k - M Sigma_start[J, j_k]``, ``M <- M + c_k a_k a_k^T``; the mean likewise moves
  by ``G g``). Each block then costs one batched matrix product over the whole Sigma instead
  of b passes of a rank-one update (memory traffic / b; same n^3 flops per sweep).
* No refactorisation between sweeps. ``run_ep`` recomputes Sigma, mu and ln|B| from a fresh
  Cholesky of ``B = I + S^1/2 K S^1/2`` after every sweep to shed rank-one round-off; here
  Sigma and mu carry over, and ``ln|B|`` is accumulated by the matrix determinant lemma,
  ``|K^-1 + S + dt e_i e_i^T| = |K^-1 + S| (1 + dt Sigma_ii)``, so
  ``ln|B| = sum_updates ln(1 + dt Sigma_ii)``. Measured against ``run_ep``: |Delta ln Z| <=
  1e-10 and the same sweep counts (``tests/test_ep_batch.py``).

and three that only change where the same numbers are computed (issue 14, round 2):

* The block update ``G M G^T`` is symmetric, so Sigma is kept by ``GROUPS`` row groups, each
  from its own first column on (3/4 of the products for two groups), and it is applied
  ``SUB`` patterns at a time, so that each product is subtracted while it is still in cache
  (over a whole chunk it was a 30 MB temporary written to memory and read back).
* The first sweep starts every pattern from the same state (zero sites, ``Sigma = K``), and
  a pattern's state after site j depends only on its signs up to j: each block of the first
  sweep runs once per distinct prefix (``_first_sweep``). In joint mode all patterns share
  S's signs, and SGD's functions share long prefixes on E; rows are sorted so that a chunk
  holds such patterns together.

and one (issue 14, round 4) that only changes where chunks run: on Linux the chunks go to
forked worker processes instead of threads (``_map_chunks``). A sweep is many small numpy
calls, each holding the GIL for its dispatch: on 2,048 functions of the benchmark's n = 7
task (under the timing lock, two runs each) two threads took 1.36-1.46x (conditional) and
1.53-1.66x (joint) less time than one worker, two processes 1.62-1.77x and 1.70-1.94x; the
values are bit for bit those of one worker. A pool lives for one call (fork and shutdown
~45 ms).

Round 5 (issue 14) cuts the memory traffic of a chunk (Sigma is 33 MB for 256 patterns at
n = 128, so every pass over the whole chunk streamed it from memory; on 32 patterns, in cache,
the same update took half the time per pattern):

* After the first sweep, Sigma is updated once per span of ``OUTER`` = 32 sites (two blocks):
  the span's second block brings its gathered columns up to date with the first block's
  update (a b x b x n product per pattern) instead of waiting for a pass over Sigma, and the
  span's update is one product of inner dimension 32. The blocks' site updates, sweep counts
  and ln|B| terms are the same; the products are summed in another order (|Delta ln Z| vs
  the per-block update ~1e-13 on the benchmark's functions).
* The product ``M G^T``, the mean's update, the update of Sigma and the gather of the next
  span's columns run ``SUB`` patterns at a time, each while those patterns' rows are in cache.
* The first sweep becomes a plain sweep from the block where every pattern has a prefix of
  its own; rows that converge are compacted in place (the fresh copy of Sigma it replaces
  took 8 % of a chunk's time in a profile).

Converged patterns leave the batch (their state is final, as in a separate run). Patterns
where an update would make Sigma indefinite (``1 + dt Sigma_ii <= 0``) or a variance
non-positive or non-finite are reported with ``ok = False``; the caller reruns those with the
per-pattern path, which escalates jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfcx

from ._ep import trunc_moments

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_SQRT2 = np.sqrt(2.0)

BLOCK = 16  # sites per blocked update (n^2 b work per block; b^2 per site inside it)
SUB = 8  # rows of the batch per product in the update (their work arrays fit a core's L2)
OUTER = 32  # sites per update of Sigma in sweeps after the first (``_sweep``)
GROUPS = 2  # row groups of Sigma, each kept from its first column on ((G + 1) / 2G of the work)


def _groups(n, block):
    """Row groups ``[(g0, g1), ...]`` of Sigma: GROUPS spans of whole blocks."""
    nblk = -(-n // block)
    edges = sorted({min(n, block * (nblk * k // GROUPS)) for k in range(GROUPS + 1)})
    return list(zip(edges[:-1], edges[1:]))


def _group_start(j0, n, block):
    return max(g0 for g0, _ in _groups(n, block) if g0 <= j0)
CHUNK = 256  # patterns per batch (measured best of 128-512 at n = 96: Sigma is 19 MB)


def _sites(tau, nu, mu, var, Y, m, tau_floor):
    """``_ep._sites_from_posterior`` for a batch (rows): (ln Z terms, residual per row)."""
    tau_c = np.maximum(1.0 / var - tau, tau_floor)
    nu_c = mu / var - nu
    mu_c = nu_c / tau_c
    sd_c = 1.0 / np.sqrt(tau_c)
    z = Y * (mu_c + m) / sd_c
    log_zhat, lam, r, omr = trunc_moments(z.ravel())
    log_zhat, lam, omr = (a.reshape(z.shape) for a in (log_zhat, lam, omr))
    mu_hat = mu_c + Y * sd_c * lam
    resid = np.maximum(np.max(np.abs((mu_hat - mu) / np.sqrt(var)), axis=1),
                       np.max(np.abs(np.log(omr / (tau_c * var))), axis=1))
    return log_zhat, tau_c, mu_c, resid


def _log_z(log_zhat, tau_c, mu_c, tau, nu, mu, var, logdet_half):
    """``_ep._log_z`` for a batch."""
    return (np.sum(log_zhat, axis=1) + 0.5 * np.einsum("bi,bi->b", nu, mu) - logdet_half
            - 0.5 * np.sum(mu**2 / var - mu_c**2 * tau_c, axis=1)
            + 0.5 * np.sum(np.log1p(tau / tau_c), axis=1))


def _site_moments(z):
    """``(lam, r, 1 - r)`` of ``_ep.trunc_moments`` (the same formulas; no ln Phi)."""
    lam = _SQRT_2_OVER_PI / erfcx(-z / _SQRT2)
    r = lam * (z + lam)
    omr = 1.0 - r
    tail = z < -3.0
    if tail.any():
        _, _, r_t, omr_t = trunc_moments(z[tail])
        r[tail], omr[tail] = r_t, omr_t
    return lam, r, omr


def _sweep(Sigma, mu, tau, nu, ldB, Y, m, tau_floor, block, buf, start=0):
    """One sequential sweep over the sites from ``start`` (a multiple of ``block``) on, in
    place (``buf``: a work array of ``SUB n^2`` floats). Returns a bool mask of failed rows.
    Sigma is kept by row groups (``_groups``): row group [g0, g1) holds columns g0 on; the
    rest follows by symmetry.

    Sigma is updated once per span of ``OUTER`` sites (blocks of ``block`` inside): a block's
    columns ``G^T`` are gathered at the span's start and brought up to date with the span's
    earlier blocks, ``G^T -= V[:, J]^T H`` (``V``: their G^T stacked, ``H``: their M G^T),
    which is b x r x n work per block instead of an n x n pass over Sigma; the span then
    changes Sigma by one product of inner dimension OUTER (``_update``). Sigma, tens of MB
    per chunk, is read and written once per span instead of once per block."""
    nb, n, _ = Sigma.shape
    bad = np.zeros(nb, bool)
    outer = max(block, OUTER // block * block)
    spans = [(o0, min(o0 + outer, n)) for o0 in range(start, n, outer)]

    def blocks(o0, o1):
        return [(j0, min(j0 + block, o1)) for j0 in range(o0, o1, block)]

    V, V_next, H = (np.empty((nb, outer, n)) for _ in range(3))
    for t, (j0, j1) in enumerate(blocks(*spans[0])):
        _gather(Sigma, j0, j1, block, out=V[:, t * block: t * block + j1 - j0])
    for s, (o0, o1) in enumerate(spans):
        for j0, j1 in blocks(o0, o1):
            q0, q1, J = j0 - o0, j1 - o0, slice(j0, j1)
            GT = V[:, q0:q1]
            if q0:
                for p0 in range(0, nb, SUB):
                    P = slice(p0, min(p0 + SUB, nb))
                    GT[P] -= np.matmul(V[P, :q0, J].transpose(0, 2, 1), H[P, :q0])
            M, g = _site_block(GT[:, :, J].copy(), mu[:, J].copy(), tau, nu, ldB, Y, m,
                               tau_floor, j0, bad)
            for p0 in range(0, nb, SUB):  # as above: each part of G^T once, in cache
                P = slice(p0, min(p0 + SUB, nb))
                np.matmul(M[P], GT[P], out=H[P, q0:q1])
                mu[P] += np.matmul(g[P, None, :], GT[P])[:, 0, :]
        nxt = blocks(*spans[s + 1]) if s + 1 < len(spans) else None
        _update(Sigma, V[:, : o1 - o0], H[:, : o1 - o0], block, buf, nxt, V_next)
        V, V_next = V_next, V
    return bad


def _gather(Sigma, j0, j1, block, out=None):
    """``G^T = Sigma[:, :, J]^T`` for the sites ``J = j0..j1-1`` from the row-group storage:
    rows J of Sigma from their row group's first column on, and before it the columns J of
    the earlier row groups, transposed (Sigma is symmetric)."""
    nb, n, _ = Sigma.shape
    J = slice(j0, j1)
    r0 = _group_start(j0, n, block)
    GT = np.empty((nb, j1 - j0, n)) if out is None else out
    GT[:, :, r0:] = Sigma[:, J, r0:]
    if r0:
        GT[:, :, :r0] = Sigma[:, :r0, J].transpose(0, 2, 1)
    return GT


def _first_sweep(K, Y, m, tau_floor, block, buf):
    """The first sweep for every row of ``Y``, from the prior (zero sites, ``Sigma = K``):
    rows that agree on the signs of sites ``0..j`` have the same state after site j, so each
    block runs once per distinct prefix of signs up to its end (in joint mode every row
    shares S's signs; functions found by SGD share long prefixes on E too), and the states
    fan out as the prefixes part. Returns ``(Sigma, mu, tau, nu, ldB, bad)`` per row, the
    values ``_sweep`` gives row by row."""
    nb, n = Y.shape
    grp = np.zeros(nb, np.int64)  # row -> its prefix's state
    Sigma = K[None].copy()
    mu, tau, nu = np.zeros((1, n)), np.zeros((1, n)), np.zeros((1, n))
    ldB, bad = np.zeros(1), np.zeros(1, bool)
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        keys = np.concatenate([grp[:, None], (Y[:, j0:j1] > 0)], axis=1)
        _, first, grp_next = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        if len(first) == nb:
            # every row has a prefix of its own from here on: the rest is a plain sweep
            if len(Sigma) != nb or np.any(grp != np.arange(nb)):
                Sigma, mu, tau, nu, ldB, bad = (a[grp] for a in (Sigma, mu, tau, nu, ldB, bad))
            bad |= _sweep(Sigma, mu, tau, nu, ldB, Y, m, tau_floor, block, buf, start=j0)
            return Sigma, mu, tau, nu, ldB, bad
        grp = grp_next.ravel()
        parent = keys[first, 0]
        if len(parent) != len(Sigma) or np.any(parent != np.arange(len(parent))):
            Sigma, mu, tau, nu, ldB, bad = (a[parent] for a in (Sigma, mu, tau, nu, ldB, bad))
        _block(Sigma, mu, tau, nu, ldB, Y[first], m, tau_floor, j0, j1, block, buf, bad)
    if len(Sigma) != nb or np.any(grp != np.arange(nb)):
        Sigma, mu, tau, nu, ldB, bad = (a[grp] for a in (Sigma, mu, tau, nu, ldB, bad))
    return Sigma, mu, tau, nu, ldB, bad


def _site_block(PT, muJ0, tau, nu, ldB, Y, m, tau_floor, j0, bad):
    """The sites ``j0..j0+b-1`` of a sweep given ``PT`` (rows: ``Sigma[j_k, J]``) and
    ``muJ0 = mu[J]`` at the block's start; updates ``tau``, ``nu``, ``ldB`` and ``bad`` in
    place and returns ``(M, g)``: the block changes Sigma by ``-G M G^T`` and mu by ``G g``
    with ``G = Sigma[:, J]`` at its start."""
    nb, b, _ = PT.shape
    # M = sum_k c_k a_k a_k^T is kept as its factors: AT (rows a_k) and cs (c_k), so that a
    # site costs two (k x b) products instead of a b x b outer-product update
    AT = np.zeros((nb, b, b))
    cs = np.zeros((nb, b))
    g = np.zeros((nb, b))
    for k in range(b):
        i = j0 + k
        # the current column Sigma[:, i] is G a with a = e_k - M P[:, k]; on J it is P a
        if k:
            Ak = AT[:, :k, :]
            w = cs[:, :k] * np.matmul(Ak, PT[:, k, :, None])[:, :, 0]
            a = -np.matmul(w[:, None, :], Ak)[:, 0, :]
        else:
            a = np.zeros((nb, b))
        a[:, k] += 1.0
        sii = np.einsum("bj,bj->b", PT[:, k, :], a)
        mu_i = muJ0[:, k] + np.einsum("bj,bj->b", PT[:, k, :], g)
        ti, ni = tau[:, i], nu[:, i]
        tc = np.maximum(1.0 / sii - ti, tau_floor[i])
        mc = (mu_i / sii - ni) / tc
        sdc = 1.0 / np.sqrt(tc)
        y = Y[:, i]
        lam, r, omr = _site_moments(y * (mc + m[i]) / sdc)
        t_new = ti + 1.0 * (tc * r / omr - ti)
        n_new = ni + 1.0 * (tc * (mc * r + y * sdc * lam) / omr - ni)
        dt, dn = t_new - ti, n_new - ni
        tau[:, i], nu[:, i] = t_new, n_new
        den = 1.0 + dt * sii
        bad |= ~(den > 0)
        ldB += np.log(np.where(den > 0, den, 1.0))
        c = dt / den
        coef = dn / den - c * mu_i
        AT[:, k, :] = a
        cs[:, k] = c
        g += coef[:, None] * a
    M = np.matmul(AT.transpose(0, 2, 1) * cs[:, None, :], AT)
    return M, g


def _block(Sigma, mu, tau, nu, ldB, Y, m, tau_floor, j0, j1, block, buf, bad):
    """Sites ``j0..j1-1`` of a sequential sweep, in place; failed rows are or-ed into ``bad``
    (the first sweep's step; later sweeps apply several blocks at once, ``_sweep``)."""
    nb, n, _ = Sigma.shape
    J = slice(j0, j1)
    GT = _gather(Sigma, j0, j1, block)
    M, g = _site_block(GT[:, :, J].copy(), mu[:, J].copy(), tau, nu, ldB, Y, m, tau_floor, j0,
                       bad)
    # Sigma <- Sigma - G M G^T, mu <- mu + G g: the block's b updates at once (``_update``)
    _update(Sigma, GT, np.matmul(M, GT), block, buf)
    mu += np.matmul(g[:, None, :], GT)[:, 0, :]


def _update(Sigma, V, H, block, buf, nxt=None, V_next=None):
    """``Sigma <- Sigma - V^T H`` (``V``, ``H``: (nb, r, n) stacked over r rows, the update of
    one or more blocks), by row groups (each kept from its first column on: the update is
    symmetric, the lower part would repeat it) and by SUB rows of the batch at a time, so that
    each product is subtracted while it is in cache: a product over the whole chunk (30 MB at
    n = 128) went to memory and came back for the subtraction. With ``nxt`` (a list of
    blocks ``(j0, j1)``), their rows of the updated Sigma are gathered into ``V_next`` (rows
    ``0, b, ...``) right after each part's update, while it is in cache."""
    nb, n, _ = Sigma.shape
    r = V.shape[1]
    Vt = V.transpose(0, 2, 1)
    groups = _groups(n, block)
    for p0 in range(0, nb, SUB):
        P = slice(p0, min(p0 + SUB, nb))
        for g0, g1 in groups:
            out = buf[: (P.stop - p0) * (g1 - g0) * (n - g0)].reshape(P.stop - p0, g1 - g0,
                                                                     n - g0)
            np.matmul(Vt[P, g0:g1, :r], H[P, :, g0:], out=out)
            Sigma[P, g0:g1, g0:] -= out
        for t0, (j0, j1) in enumerate(nxt or ()):
            _gather(Sigma[P], j0, j1, block, out=V_next[P, t0 * block: t0 * block + j1 - j0])

def ep_log_orthant_batch(K, signs, *, mean=None, tol: float = 1e-4, max_iter: int = 50,
                         block: int = BLOCK, chunk: int = CHUNK, threads: int | None = None,
                         workers: str = "auto"):
    """Sequential-EP estimates of ``ln P(sign(z) = signs[b])``, ``z ~ N(mean, K)``, every row b.

    ``K`` (n, n) is the matrix EP runs on (any jitter already added, as in ``_ep.run_ep``);
    ``signs`` (n_b, n) in {-1, +1}; ``mean`` (n,) or None. Returns numpy arrays
    ``(log_Z, n_iter, converged, ok)``; where ``ok`` is False an update failed and ``log_Z``
    is nan (rerun that row with ``log_orthant_probability``, which adds jitter).

    Chunks of ``chunk`` rows run on ``threads`` workers (default: the cores this process may
    use), each with one BLAS thread; results do not depend on either. ``workers``: "process"
    (forked worker processes), "thread" (threads of this process) or "auto" (processes where
    the platform forks, i.e. Linux; threads elsewhere). A sweep is hundreds of small numpy
    calls per site block, each holding the GIL for its dispatch, so threads share one core's
    worth of that work (two threads: 1.06-1.28x one; processes: see ``_map_chunks``).
    """
    if workers not in ("auto", "process", "thread"):
        raise ValueError(f"workers: expected 'auto', 'process' or 'thread', got {workers!r}")
    K = np.asarray(K, np.float64)
    Y = np.asarray(signs, np.float64)
    n = K.shape[0] if K.ndim == 2 else -1
    if K.shape != (n, n):
        raise ValueError(f"K: expected a square matrix, got shape {K.shape}")
    if Y.ndim != 2 or Y.shape[1] != n:
        raise ValueError(f"signs: expected shape (n_b, {n}), got {Y.shape}")
    m = np.zeros(n) if mean is None else np.broadcast_to(np.asarray(mean, np.float64), (n,))
    nb = len(Y)
    log_Z = np.full(nb, np.nan)
    n_iter = np.zeros(nb, np.int64)
    converged = np.zeros(nb, bool)
    ok = np.ones(nb, bool)
    if nb == 0:
        return log_Z, n_iter, converged, ok
    if threads is None:
        threads = _cores()
    # equal chunks, at most `chunk` rows, at least one per thread when there is work for it
    n_chunks = max(-(-nb // chunk), min(threads, -(-nb // 32)))
    bounds = np.linspace(0, nb, n_chunks + 1).round().astype(int)
    sls = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    # rows in lexicographic order of their signs: a chunk then holds patterns with long common
    # prefixes, which share the first sweep's blocks (``_first_sweep``); rows are independent
    order = np.lexsort(Y.T[::-1])

    if workers == "auto":
        workers = "process" if _can_fork() else "thread"
    args = [(K, Y[order[sl]], m, tol, max_iter, block) for sl in sls]
    results = _map_chunks(args, min(threads, len(sls)), workers)
    for sl, (lz, it, conv, good) in zip(sls, results):
        rows = order[sl]
        log_Z[rows], n_iter[rows], converged[rows], ok[rows] = lz, it, conv, good
    return log_Z, n_iter, converged, ok


def _can_fork() -> bool:
    import multiprocessing
    import sys

    # fork only where it is the platform's own model (macOS's default is spawn for a reason),
    # and not from a daemonic process (e.g. a multiprocessing or Dask worker: it may not have
    # children)
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)


def _chunk_one_blas_thread(args):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run_chunk(*args)


def _worker_signals():
    # a forked worker inherits the parent's handlers (e.g. ``Interrupts``, which raises on
    # SIGINT): the parent alone reacts to a signal and shuts the pool down; SIGTERM ends a
    # worker at once
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _map_chunks(args, n_workers, workers):
    """``_run_chunk`` over ``args`` (one tuple per chunk), in order.

    Processes are forked from this one (each chunk's arrays and results are small: K is
    n x n with n ~ 10^2) and live for this call only. Forking copies no data, but JAX warns
    that a fork of its (multithreaded) process may deadlock: a worker runs numpy and
    scipy.special only, never JAX, and glibc's malloc and OpenBLAS reinitialise their locks
    and threads at fork, so the warning does not apply here and is silenced."""
    if n_workers <= 1 or workers == "thread":
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        # the limit is process-wide: set once around all threads, not per chunk
        with threadpool_limits(limits=1, user_api="blas"):
            if n_workers <= 1:
                return [_run_chunk(*a) for a in args]
            with ThreadPoolExecutor(max_workers=n_workers) as ex:
                return list(ex.map(lambda a: _run_chunk(*a), args))
    import multiprocessing
    import warnings
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=_worker_signals)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                    category=RuntimeWarning)
            # Python >= 3.12 says the same of any multithreaded process
            warnings.filterwarnings("ignore", message=r".*multi-threaded, use of fork\(\)",
                                    category=DeprecationWarning)
            futures = [ex.submit(_chunk_one_blas_thread, a) for a in args]
        out = [f.result() for f in futures]
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return out


def _cores() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _run_chunk(K, Y, m, tol, max_iter, block):
    nb, n = Y.shape
    tau_floor = 1.0 / np.diag(K)
    out_lz = np.full(nb, np.nan)
    out_it = np.zeros(nb, np.int64)
    out_conv = np.zeros(nb, bool)
    out_ok = np.ones(nb, bool)
    idx = np.arange(nb)  # rows still iterating
    Yc = Y
    buf = np.empty(SUB * n * n)
    for it in range(1, max_iter + 1):
        if it == 1:
            Sigma, mu, tau, nu, ldB, bad = _first_sweep(K, Yc, m, tau_floor, block, buf)
        else:
            bad = _sweep(Sigma, mu, tau, nu, ldB, Yc, m, tau_floor, block, buf)
        var = np.diagonal(Sigma, axis1=1, axis2=2).copy()
        bad |= ~np.all((var > 0) & np.isfinite(var), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            log_zhat, tau_c, mu_c, resid = _sites(tau, nu, mu, var, Yc, m, tau_floor)
            lz = _log_z(log_zhat, tau_c, mu_c, tau, nu, mu, var, 0.5 * ldB)
        bad |= ~np.isfinite(lz)
        done = bad | (resid < tol) | (it == max_iter)
        out_it[idx] = it
        out_lz[idx] = np.where(bad, np.nan, lz)
        out_conv[idx] = ~bad & (resid < tol)
        out_ok[idx] = ~bad
        if done.all():
            break
        keep = ~done
        idx = idx[keep]
        if not keep.all():
            # Sigma (n^2 per row) is compacted in place: a fresh copy of tens of MB cost more
            # than a sweep's work on the rows it drops
            for dst, src in enumerate(np.flatnonzero(keep)):
                if dst != src:
                    Sigma[dst] = Sigma[src]
            Sigma = Sigma[: len(idx)]
            mu, tau, nu, ldB, Yc = (a[keep] for a in (mu, tau, nu, ldB, Yc))
    return out_lz, out_it, out_conv, out_ok


@dataclass(frozen=True)
class OrthantBatch:
    """EP estimates for many sign patterns under one covariance (see ``ep_log_orthant_many``).

    ``log_p`` (n_b,): ln P(sign(z) = signs[b]); ``jitter``: added to the diagonal of K for
    every row (absolute; a row that needed more, rerun alone, reports it in ``row_jitter``);
    ``n_iter``, ``converged`` per row; ``n_rerun``: rows rerun with the per-pattern path."""

    log_p: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    row_jitter: np.ndarray
    n_rerun: int


def ep_log_orthant_many(K, signs, *, mean=None, tol: float = 1e-4, **kw) -> OrthantBatch:
    """``log_orthant_probability(K, signs[b], "ep", mean=mean, tol=tol).log_p`` for every row b.

    The same checks, jitter policy and EP variant as the per-pattern call: K is validated and
    symmetrised, jitter is added only if its Cholesky fails; for ``n <= PARALLEL_THRESHOLD``
    (sequential EP) the rows run together in ``ep_log_orthant_batch`` (``kw``: ``block``,
    ``chunk``, ``threads``), rows whose updates failed are rerun one by one (escalating
    jitter); larger n run one by one (parallel EP).
    """
    from . import _ep
    from ._orthant import (_add_jitter, _check_K, _check_mean, _check_signs, _psd_cholesky,
                           log_orthant_probability)

    from ._orthant import _has_zero_variance

    Kz = np.asarray(K, dtype=np.float64)
    if _has_zero_variance(Kz):
        return _many_with_zero_variance(Kz, signs, mean, tol, kw)
    K = _check_K(K)
    n = K.shape[0]
    S = np.asarray(signs)
    if S.ndim != 2 or S.shape[1] != n:
        raise ValueError(f"signs: expected shape (n_b, {n}), got {S.shape}")
    S = _check_signs(S.ravel(), S.size).reshape(S.shape)  # one check for all rows
    m = _check_mean(mean, n)
    nb = len(S)
    log_p = np.full(nb, np.nan)
    n_iter = np.zeros(nb, np.int64)
    conv = np.zeros(nb, bool)
    row_jit = np.zeros(nb)
    rerun = np.arange(nb)
    if n <= _ep.PARALLEL_THRESHOLD and nb:
        _, jitter = _psd_cholesky(K)
        log_p, n_iter, conv, ok = ep_log_orthant_batch(_add_jitter(K, jitter), S, mean=m,
                                                       tol=tol, **kw)
        row_jit[:] = jitter
        rerun = np.flatnonzero(~ok)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EP did not converge", category=RuntimeWarning)
        for i in rerun:
            r = log_orthant_probability(K, S[i], "ep", mean=m, tol=tol)
            log_p[i], n_iter[i], conv[i], row_jit[i] = r.log_p, r.n_iter, r.converged, r.jitter
    return OrthantBatch(log_p=log_p, n_iter=n_iter, converged=conv, row_jitter=row_jit,
                        n_rerun=int(len(rerun)))


def _many_with_zero_variance(K, signs, mean, tol, kw) -> OrthantBatch:
    """Rows with ``K_ii = 0`` as in ``log_orthant_probability`` (``_with_zero_variance``): such a
    coordinate is constant, ``z_i = mean_i``, negative when 0 (labels are ``f(x) > 0``); a row
    whose sign there disagrees has probability 0, the others are scored on the other
    coordinates (e.g. the all-zero Boolean input with sigma_b = 0)."""
    from ._orthant import _check_mean, _check_signs, _zero_variance_split

    n = K.shape[0]
    S = np.asarray(signs)
    if S.ndim != 2 or S.shape[1] != n:
        raise ValueError(f"signs: expected shape (n_b, {n}), got {S.shape}")
    S = _check_signs(S.ravel(), S.size).reshape(S.shape)
    m = _check_mean(mean, n)
    zero, ok = _zero_variance_split(K, S, m)
    nb = len(S)
    log_p = np.where(ok, 0.0, -np.inf)
    n_iter, conv, row_jit = np.zeros(nb, np.int64), np.ones(nb, bool), np.zeros(nb)
    keep, rows = ~zero, np.flatnonzero(ok)
    n_rerun = 0
    if keep.any() and len(rows):
        r = ep_log_orthant_many(K[np.ix_(keep, keep)], S[np.ix_(rows, keep)], mean=m[keep],
                                tol=tol, **kw)
        log_p[rows], n_iter[rows], conv[rows], row_jit[rows] = r.log_p, r.n_iter, r.converged, r.row_jitter
        n_rerun = r.n_rerun
    return OrthantBatch(log_p=log_p, n_iter=n_iter, converged=conv, row_jitter=row_jit,
                        n_rerun=n_rerun)
