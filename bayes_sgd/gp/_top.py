"""The most probable sign patterns of a Gaussian: the top functions of a GP predictive on E.

Given the (EP) posterior predictive ``f_E | S ~ N(mean, cov)`` on the test set E, the GP's
probability of a function ``s in {0,1}^|E|`` is the orthant probability

    P_B(s | S) = P(sign f_E = s),    f_E ~ N(mean, cov).

Which ``s`` are the most probable, and how much mass do the top k hold?  Two ways:

* ``sample_sign_patterns``: draw ``f_E`` from the Gaussian and count its sign patterns.  The
  frequency of each pattern is an unbiased estimate of its orthant probability (binomial
  error ``sqrt(p(1-p)/N)``), every pattern with ``p >> 1/N`` is found, and the k most frequent
  are the top k up to that noise; the summed frequency of the top k estimates their mass.
  This is what ``top_functions`` uses: it also scores each of them with
  ``log_orthant_probability`` (exact up to ``EXACT_MAX_DIM`` dimensions, EP beyond), so the
  two estimates check each other.
* ``greedy_mode``: hill-climbing from ``sign(mean)`` by single bit flips, each candidate scored
  by its orthant probability.  It needs no sampling, so it reaches the regime ``p << 1/N``
  (broad posteriors, where sampling sees no pattern twice), but it only guarantees a local
  maximum (no single flip scores higher).

The tests compare both against brute-force enumeration of all ``2^|E|`` patterns with exact
orthant probabilities (``tests/test_gp_top.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._orthant import EXACT_MAX_DIM, _check_K, _check_mean, _psd_cholesky, log_orthant_probability

__all__ = ["TopFunctions", "greedy_mode", "sample_sign_patterns", "top_functions"]


def _pack(bits: np.ndarray) -> np.ndarray:
    """(N, n) 0/1 -> (N,) void keys (np.unique sorts these bytewise)."""
    packed = np.ascontiguousarray(np.packbits(bits.astype(np.uint8), axis=1))
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


def _unpack(keys: np.ndarray, n: int) -> np.ndarray:
    raw = np.frombuffer(keys.tobytes(), np.uint8).reshape(len(keys), -1)
    return np.unpackbits(raw, axis=1)[:, :n]


def sample_sign_patterns(mean, cov, *, rng: np.random.Generator, n_samples: int,
                         batch: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` of ``z ~ N(mean, cov)`` and count the patterns ``z > 0``.

    Returns ``(patterns, counts)``: distinct 0/1 patterns (uint8, shape (d, n)) and their
    counts, most frequent first (ties: bytewise order of the packed pattern).  ``cov`` may be
    singular (jitter as in ``log_orthant_probability``).
    """
    K = _check_K(cov, "cov")
    n = K.shape[0]
    m = _check_mean(mean, n, "mean")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive int, got {n_samples!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    L, _ = _psd_cholesky(K)
    keys, counts = [], []
    done = 0
    while done < n_samples:
        b = min(batch, n_samples - done)
        z = rng.standard_normal((b, n)) @ L.T + m
        u, c = np.unique(_pack(z > 0), return_counts=True)
        keys.append(u)
        counts.append(c)
        done += b
    u, inv = np.unique(np.concatenate(keys), return_inverse=True)
    c = np.bincount(inv.ravel(), weights=np.concatenate(counts)).astype(np.int64)
    order = np.lexsort((np.arange(len(c)), -c))
    return _unpack(u[order], n), c[order]


def _score(mean, cov, bits, method: str, rng) -> float:
    opts = {"rng": rng} if method == "exact" else {}
    return float(log_orthant_probability(cov, bits, method, mean=mean, **opts).log_p)


def _method(method: str | None, n: int) -> str:
    if method is None:
        return "exact" if n <= EXACT_MAX_DIM else "ep"
    if method not in ("exact", "ep"):
        raise ValueError(f"method: expected 'exact', 'ep' or None (exact up to {EXACT_MAX_DIM} "
                         f"dimensions, EP beyond), got {method!r}")
    return method


@dataclass
class TopFunctions:
    """The ``k`` most frequent sign patterns of ``n_samples`` Gaussian draws.

    ``bits`` (k, n) 0/1; ``count`` their draws; ``p_mc = count / n_samples``; ``log_p`` their
    natural-log orthant probability by ``method`` (nan if not scored); ``n_distinct``: distinct
    patterns among all draws.  ``mass_mc`` = summed ``p_mc`` of the k (binomial standard error
    ``mass_mc_stderr``).
    """

    bits: np.ndarray
    count: np.ndarray
    n_samples: int
    log_p: np.ndarray
    method: str
    n_distinct: int

    @property
    def p_mc(self) -> np.ndarray:
        return self.count / self.n_samples

    @property
    def mass_mc(self) -> float:
        return float(self.count.sum() / self.n_samples)

    @property
    def mass_mc_stderr(self) -> float:
        p = self.mass_mc
        return float(np.sqrt(p * (1 - p) / self.n_samples))


def top_functions(mean, cov, *, rng: np.random.Generator, n_samples: int = 1_000_000, k: int = 100,
                  method: str | None = None, score: int | None = None) -> TopFunctions:
    """The ``k`` most probable sign patterns of ``N(mean, cov)``, found by sampling.

    Draws ``n_samples`` (see ``sample_sign_patterns``), keeps the ``k`` most frequent patterns
    and scores the first ``score`` of them (default all ``k``) with ``log_orthant_probability``
    (``method``: "exact", "ep", or None = exact up to ``EXACT_MAX_DIM`` dimensions, EP beyond).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    pats, counts = sample_sign_patterns(mean, cov, rng=rng, n_samples=n_samples)
    n = pats.shape[1]
    meth = _method(method, n)
    pats, top = pats[:k], counts[:k]
    n_score = len(pats) if score is None else min(int(score), len(pats))
    log_p = np.full(len(pats), np.nan)
    m = _check_mean(mean, n, "mean")
    for i in range(n_score):
        log_p[i] = _score(m, cov, pats[i], meth, rng)
    return TopFunctions(bits=pats, count=top, n_samples=int(n_samples), log_p=log_p, method=meth,
                        n_distinct=int(len(counts)))


def greedy_mode(mean, cov, *, start=None, method: str | None = None, candidates: int | None = None,
                rng: np.random.Generator | None = None, max_steps: int = 1000):
    """Hill-climb to a locally most probable sign pattern of ``N(mean, cov)``.

    Starts from ``start`` (default ``mean > 0``, the pattern of the marginal modes) and applies
    the single bit flip that raises the orthant probability most, until none does.  With
    ``candidates`` only that many flips are tried per step: those of the least confident bits
    (smallest ``|mean_i| / sd_i``).  Returns ``(bits, log_p, n_evaluations)``; ``bits`` is a
    local maximum over single flips (over the tried ones with ``candidates``).
    """
    K = _check_K(cov, "cov")
    n = K.shape[0]
    m = _check_mean(mean, n, "mean")
    meth = _method(method, n)
    rng = rng if rng is not None else np.random.default_rng(0)
    bits = (m > 0).astype(np.uint8) if start is None else np.asarray(start, np.uint8).copy()
    if bits.shape != (n,) or not np.isin(bits, (0, 1)).all():
        raise ValueError(f"start: expected {n} values in {{0, 1}}, got {np.asarray(start)!r}")
    conf = np.abs(m) / np.sqrt(np.diag(K))
    order = np.argsort(conf, kind="stable")
    tried = order if candidates is None else order[: int(candidates)]
    best = _score(m, K, bits, meth, rng)
    n_eval = 1
    for _ in range(max_steps):
        gains = []
        for j in tried:
            b = bits.copy()
            b[j] ^= 1
            gains.append(_score(m, K, b, meth, rng))
            n_eval += 1
        j = int(np.argmax(gains))
        # a flip must beat the current score by more than the scorer's noise (exact: QMC ~1e-4)
        if gains[j] <= best + 1e-3:
            break
        bits[tried[j]] ^= 1
        best = gains[j]
    return bits, best, n_eval
