"""GP estimate of P_B(f|S) for the functions the counting samplers found.

With ``f ~ GP(0, K_NNGP)`` and the 0-1 (Heaviside) likelihood, the Bayesian posterior over
functions on E is

    P_B(f | S) = P(sign f(X_S) = y_S and sign f(X_E) = f) / P(sign f(X_S) = y_S)        (joint)

both numerator and denominator being Gaussian orthant probabilities (Mingard et al. 2021 score
functions this way, with EP).  ``mode = "conditional"`` instead fits EP to S once and scores
each function by the orthant probability of the EP predictive ``N(mean_E, cov_E)``; that is
faster (|E| instead of |S| + |E| dimensions) but not the same quantity: the true predictive of
f_E given the signs on S is not Gaussian.  For one point in S and one in E the two are, with
rho the kernel correlation, ``1/2 + asin(rho)/pi`` (joint) and
``Phi(rho sqrt(2/pi) / sqrt(1 - 2 rho^2/pi))`` (conditional: EP with one site matches the
truncated-normal moments exactly); ``compare_modes`` measures the gap on real functions.

Duplicate inputs.  EP treats every row of S as its own likelihood site, so an input repeated
in S is counted twice (its constraint squared in the EP approximation, although the event is
the same), and a repeated row makes K singular.  Image tasks can hold duplicates; Boolean tasks
cannot.  ``GPProblem`` therefore works on the *distinct* inputs of S and E: a repeated input in
S is one constraint (S with one input labelled both ways has P(S) = 0), an E input equal to an
S input must carry the S label (P(f|S) = 0 otherwise) and repeated E inputs must agree.  The
counts are recorded in the summary under ``duplicates`` and a warning is issued.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from ..progress import progress as tqdm  # a bar on a terminal, plain lines in a log

from ..analysis import correlation
from ..counting import strings_to_bits
from ..function_table import COLUMNS, estimate_frame
from ..jsonclean import clean_json as _clean
from ..models import FCN
from ..gp import (EXACT_MAX_DIM, ep_log_orthant_many, ep_posterior, ep_predictive,
                  fcn_nngp_kernel_for, log_orthant_probability, mc_nngp_kernel, pac_bayes_bound)
from ._common import STREAM, stream_key
from ._protocol import counting_names

__all__ = ["GPProblem", "Scores", "candidate_functions", "compare_modes", "gp_kernel", "run_gp",
           "prior_vs_sampling", "COMPARE_MAX_FUNCTIONS", "PRIOR_SAMPLER"]

ANALYTIC_ACTIVATIONS = ("relu", "erf", "linear")
COMPARE_MAX_FUNCTIONS = 200  # conditional mode: also score joint and compare up to this many
PRIOR_SAMPLER = "gp_prior"  # function-table rows: GP prior P(f) on the whole truth table
SCORE_PART = 2048  # functions per batched EP call: the progress bar moves between calls
_LN10 = math.log(10.0)


# ---- which functions -----------------------------------------------------------------------------

def candidate_functions(df: pd.DataFrame, max_functions: int) -> tuple[list[str], int]:
    """Distinct functions on E found by any counting sampler, most frequent (total count over
    samplers) first, ties broken by the bit string; at most ``max_functions``.
    Returns (functions, number of distinct functions found)."""
    sub = df[df["sampler"].isin(counting_names())] if len(df) else df
    if sub is None or len(sub) == 0:
        return [], 0
    tot = sub.groupby("function")["count"].sum().astype(np.int64)
    order = sorted(tot.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f for f, _ in order[:max_functions]], len(order)


# ---- the kernel ------------------------------------------------------------------------------------

def gp_kernel(cfg, model, X) -> tuple[np.ndarray, str, str | None]:
    """NNGP kernel on the rows of ``X``: analytic for an FCN with relu/erf/linear when
    ``samplers.gp.kernel = "analytic"``, Monte-Carlo (``mc_samples`` networks, key
    ``stream_key(cfg.seed, "gp")``) otherwise.  Returns (K, kernel used, note)."""
    gc = cfg.samplers.gp
    analytic_ok = isinstance(model, FCN) and model.activation in ANALYTIC_ACTIVATIONS
    note = None
    if gc.kernel == "analytic" and analytic_ok:
        return fcn_nngp_kernel_for(model, X), "analytic", None
    if gc.kernel == "analytic":
        note = (f"no analytic NNGP kernel for {type(model).__name__} with activation "
                f"{getattr(model, 'activation', '?')!r}: used the Monte-Carlo kernel")
    K = mc_nngp_kernel(model, X, key=stream_key(cfg.seed, "gp"), n_samples=gc.mc_samples)
    return 0.5 * (K + K.T), "monte-carlo", note


# ---- the problem on distinct inputs --------------------------------------------------------------

def _first_occurrence_ids(X: np.ndarray) -> np.ndarray:
    """For each row of X an id of its distinct value, ids numbered by first appearance."""
    flat = np.ascontiguousarray(X.reshape(len(X), -1))
    view = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    _, first, inv = np.unique(view, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


@dataclass
class Scores:
    """``log10_p`` = log10 P_B(f|S) per function (nan where not scored), ``log10_p_err`` its
    standard error where the method gives one (tilting; 0 for closed forms), ``consistent``:
    False where the function contradicts a duplicate input (P = 0, not scored)."""

    log10_p: np.ndarray
    log10_p_err: np.ndarray
    consistent: np.ndarray
    log_P_S: float
    log_P_S_method: str
    log_P_S_rel_stderr: float | None
    jitter_max: float
    n_not_converged: int
    n_calls: int
    info: dict = field(default_factory=dict)
    converged: np.ndarray | None = None  # per function: its orthant computation converged
    log_P_S_converged: bool = True


@dataclass
class GPProblem:
    """The GP on the distinct inputs of S and E.

    ``K``: kernel over the distinct inputs, those of S first (``n_S`` of them), then those of E
    not in S; ``y_S``: +-1 labels of the distinct S inputs; ``e_slot``: for each E position
    (task order) the index of its distinct input; ``conflict_S``: an input of S carries both
    labels (P(S) = 0); ``duplicates``: counts of merged rows.
    """

    K: np.ndarray
    y_S: np.ndarray
    n_S: int
    e_slot: np.ndarray
    conflict_S: bool
    duplicates: dict

    @classmethod
    def from_task(cls, task, kernel_fn: Callable[[np.ndarray], np.ndarray]) -> "GPProblem":
        """Deduplicate ``task.x_all`` (S then E) and evaluate ``kernel_fn`` on the distinct rows."""
        X = np.asarray(task.x_all)
        m = task.m
        ids = _first_occurrence_ids(X)
        n_u = int(ids.max()) + 1
        s_ids, e_ids = ids[:m], ids[m:]
        n_S = len(np.unique(s_ids))
        assert n_S == 0 or s_ids.max() == n_S - 1  # S comes first, so its ids are 0..n_S-1
        lab = np.full(n_S, -1, np.int64)
        conflict = False
        for i, y in zip(s_ids, np.asarray(task.y_train, np.int64)):
            if lab[i] == -1:
                lab[i] = y
            elif lab[i] != y:
                conflict = True
        first_rows = np.zeros(n_u, np.int64)
        seen = np.zeros(n_u, bool)
        for r, i in enumerate(ids):
            if not seen[i]:
                seen[i], first_rows[i] = True, r
        dup = {"in_S": int(m - n_S), "E_in_S": int((e_ids < n_S).sum()),
               "in_E": int(((e_ids >= n_S).sum()) - (n_u - n_S)), "S_label_conflict": bool(conflict)}
        if any(dup.values()):
            warnings.warn(f"gp: duplicate inputs merged (EP would count a repeated S input "
                          f"twice): {dup}", RuntimeWarning, stacklevel=2)
        K = np.asarray(kernel_fn(X[first_rows]), np.float64)
        if K.shape != (n_u, n_u):
            raise ValueError(f"kernel_fn: expected a ({n_u}, {n_u}) matrix, got {K.shape}")
        return cls(K=0.5 * (K + K.T), y_S=2.0 * lab - 1.0, n_S=n_S, e_slot=e_ids,
                   conflict_S=conflict, duplicates=dup)

    @property
    def n_E(self) -> int:
        """Number of distinct E inputs that are not in S (the free dimensions)."""
        return self.K.shape[0] - self.n_S

    def signs_E(self, bits_E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_f, k) 0/1 functions on E -> (+-1 signs on the free E inputs (n_f, n_E),
        consistent (n_f,): agrees with S on shared inputs and with itself on repeated ones)."""
        bits = np.asarray(bits_E, np.int64).reshape(-1, len(self.e_slot))
        n_f = len(bits)
        full = np.zeros((n_f, self.K.shape[0]), np.int64)
        full[:, : self.n_S] = ((self.y_S + 1) // 2).astype(np.int64)
        # last write wins; consistency is checked against every position afterwards
        free = self.e_slot >= self.n_S
        full[:, self.e_slot[free]] = bits[:, free]
        consistent = (full[:, self.e_slot] == bits).all(axis=1)
        return 2.0 * full[:, self.n_S:] - 1.0, consistent

    # -- orthant probabilities --------------------------------------------------------------
    def _opts(self, method, tilting_samples, rng):
        if method == "ep":
            return {}
        if method == "exact":
            return {"rng": rng}
        return {"n_samples": int(tilting_samples), "rng": rng}

    def log_p_S(self, method: str = "ep", *, tilting_samples: int = 10_000, seed: int = 0):
        """OrthantResult for ln P(sign f(X_S) = y_S)."""
        if self.conflict_S:
            raise ValueError("gp: S holds an input labelled both 0 and 1, so P(S) = 0")
        rng = np.random.default_rng([seed, STREAM["gp"], 0])
        return log_orthant_probability(self.K[: self.n_S, : self.n_S], self.y_S, method,
                                       **self._opts(method, tilting_samples, rng))

    def _check_score_args(self, method: str, mode: str):
        if method not in ("ep", "exact", "minimax-tilting"):
            raise ValueError(f"method: expected 'ep', 'exact' or 'minimax-tilting', got {method!r}")
        if mode not in ("joint", "conditional"):
            raise ValueError(f"mode: expected 'joint' or 'conditional', got {mode!r}")
        dim = self.K.shape[0] if mode == "joint" else self.n_E
        if method == "exact" and dim > EXACT_MAX_DIM:
            raise ValueError(
                f"method: 'exact' handles at most {EXACT_MAX_DIM} dimensions; the "
                f"{mode} mode here needs {dim} (distinct inputs of "
                f"{'S and E' if mode == 'joint' else 'E'}): use 'ep' or 'minimax-tilting'")

    def _p_S_stage(self, method, mode, tilting_samples, seed, tally, info):
        """ln P(S) by ``method`` where it applies (EP beyond exact's 20 dimensions), and in the
        conditional mode E's EP predictive given S.
        -> (ps_method, log_ps, ps_err, ps_conv, mean_E, cov_E)"""
        ps_method = method if not (method == "exact" and self.n_S > EXACT_MAX_DIM) else "ep"
        if mode == "joint":
            ps = tally.record(self.log_p_S(ps_method, tilting_samples=tilting_samples, seed=seed))
            return ps_method, ps.log_p, ps.rel_stderr, ps.converged is not False, None, None
        st = ep_posterior(self.K[: self.n_S, : self.n_S], self.y_S)
        tally.calls += 1
        tally.jitter.append(st.jitter)
        tally.bad += int(not st.converged)
        info.update(ep_posterior_converged=bool(st.converged), ep_posterior_n_iter=int(st.n_iter))
        ps = tally.record(self.log_p_S(ps_method, tilting_samples=tilting_samples, seed=seed)) \
            if ps_method != "ep" else None
        ps_conv = bool(st.converged) and (ps is None or ps.converged is not False)
        log_ps = ps.log_p if ps is not None else float(st.log_Z)
        ps_err = ps.rel_stderr if ps is not None else None
        mean_E = cov_E = None
        if self.n_E:
            S, E = slice(0, self.n_S), slice(self.n_S, None)
            mean_E, cov_E = ep_predictive(self.K[S, S], self.K[S, E], self.K[E, E], st)
        return ps_method, log_ps, ps_err, ps_conv, mean_E, cov_E

    def score(self, bits_E, *, method: str = "ep", mode: str = "joint",
              tilting_samples: int = 10_000, seed: int = 0, show: bool = False,
              batch: bool = True) -> Scores:
        """log10 P_B(f|S) for each row of ``bits_E`` (see the module docstring for the modes).

        With ``method = "ep"`` and ``batch`` the functions are scored together
        (``gp.ep_log_orthant_many``: the same sequential EP, one covariance, many sign
        patterns); ``batch=False`` scores them one by one (the reference path)."""
        self._check_score_args(method, mode)
        signs, consistent = self.signs_E(bits_E)
        n_f = len(signs)
        out_lp = np.full(n_f, np.nan)
        out_err = np.full(n_f, np.nan)
        tally, info = _Tally(n_f), {}
        with warnings.catch_warnings():
            # EP's non-convergence warning would repeat per function: counted instead
            warnings.filterwarnings("ignore", message="EP did not converge", category=RuntimeWarning)
            ps_method, log_ps, ps_err, ps_conv, mean_E, cov_E = self._p_S_stage(
                method, mode, tilting_samples, seed, tally, info)
            if mode == "joint":
                joint_signs = np.concatenate(
                    [np.broadcast_to(self.y_S, (n_f, self.n_S)), signs], axis=1)
            rows = np.flatnonzero(consistent)
            if method == "ep" and batch and self.n_E and len(rows):
                # in parts, so that a long scoring (10^4 functions: minutes) shows progress;
                # every pattern's EP is independent of the others in its batch
                bar = tqdm(total=len(rows), desc=f"gp ({method}, {mode})", unit="fn",
                           disable=not show, dynamic_ncols=True)
                try:
                    for part in np.array_split(rows, -(-len(rows) // SCORE_PART)):
                        if mode == "joint":
                            res = ep_log_orthant_many(self.K, joint_signs[part])
                            out_lp[part] = (res.log_p - log_ps) / _LN10
                        else:
                            res = ep_log_orthant_many(cov_E, signs[part], mean=mean_E)
                            out_lp[part] = res.log_p / _LN10
                        tally.calls += len(part)
                        tally.jitter.extend(res.row_jitter.tolist())
                        tally.bad += int((~res.converged).sum())
                        tally.conv[part[~res.converged]] = False
                        bar.update(len(part))
                finally:
                    bar.close()
                rows = rows[:0]
            bar = tqdm(total=len(rows), desc=f"gp ({method}, {mode})", unit="fn", disable=not show,
                       dynamic_ncols=True)
            try:
                for i in rows:
                    rng = np.random.default_rng([seed, STREAM["gp"], 1, int(i)])
                    opts = self._opts(method, tilting_samples, rng)
                    if self.n_E == 0:
                        out_lp[i], out_err[i] = 0.0, 0.0
                    elif mode == "joint":
                        r = tally.record(log_orthant_probability(self.K, joint_signs[i], method,
                                                                 **opts), i)
                        out_lp[i] = (r.log_p - log_ps) / _LN10
                        out_err[i] = _ratio_err(r.rel_stderr, ps_err)
                    else:
                        r = tally.record(log_orthant_probability(cov_E, signs[i], method,
                                                                 mean=mean_E, **opts), i)
                        out_lp[i] = r.log_p / _LN10
                        out_err[i] = np.nan if r.rel_stderr is None else r.rel_stderr / _LN10
                    bar.update(1)
            finally:
                bar.close()
        return Scores(log10_p=out_lp, log10_p_err=out_err, consistent=consistent,
                      log_P_S=float(log_ps), log_P_S_method=ps_method,
                      log_P_S_rel_stderr=ps_err, jitter_max=float(max(tally.jitter, default=0.0)),
                      n_not_converged=tally.bad, n_calls=tally.calls, info=info,
                      converged=tally.conv, log_P_S_converged=ps_conv)


class _Tally:
    """Calls, jitters and non-converged results over one scoring (``conv`` per function)."""

    def __init__(self, n_f: int):
        self.jitter: list = []
        self.bad = 0
        self.calls = 0
        self.conv = np.ones(n_f, bool)

    def record(self, r, i=None):
        self.calls += 1
        self.jitter.append(r.jitter)
        if r.converged is False:
            self.bad += 1
            if i is not None:
                self.conv[i] = False
        return r


def _ratio_err(rel_num, rel_den) -> float:
    """Standard error of log10(P_num / P_den) from independent relative standard errors
    (delta method: Var ln P ~ rel^2); nan when either has none (EP, scipy QMC)."""
    if rel_num is None or rel_den is None:
        return np.nan
    return math.sqrt(rel_num**2 + rel_den**2) / _LN10


# ---- conditional vs joint ---------------------------------------------------------------------------

def compare_modes(problem: GPProblem, bits_E, *, method: str = "ep",
                  tilting_samples: int = 10_000, seed: int = 0, show: bool = False,
                  conditional: np.ndarray | None = None, joint: np.ndarray | None = None) -> dict:
    """How far the conditional mode is from the joint mode on the same functions.

    Scores ``bits_E`` both ways (or takes already computed log10 p via ``conditional`` /
    ``joint``) and returns ``n_functions``, ``mean_abs_diff_log10`` and
    ``max_abs_diff_log10`` (|log10 p_cond - log10 p_joint|), ``mean_diff_log10`` (signed,
    conditional - joint), ``pearson`` and ``spearman`` of the two log10 p (None with fewer
    than 3 functions or no spread), and ``method``.
    """
    if conditional is None:
        conditional = problem.score(bits_E, method=method, mode="conditional",
                                    tilting_samples=tilting_samples, seed=seed, show=show).log10_p
    if joint is None:
        joint = problem.score(bits_E, method=method, mode="joint",
                              tilting_samples=tilting_samples, seed=seed, show=show).log10_p
    c, j = np.asarray(conditional, float), np.asarray(joint, float)
    ok = np.isfinite(c) & np.isfinite(j)
    d = c[ok] - j[ok]
    corr = correlation(c, j)  # over the same finite pairs
    return {"method": method, "n_functions": int(ok.sum()),
            "mean_abs_diff_log10": float(np.abs(d).mean()) if len(d) else None,
            "max_abs_diff_log10": float(np.abs(d).max()) if len(d) else None,
            "mean_diff_log10": float(d.mean()) if len(d) else None,
            "pearson": corr["pearson"], "spearman": corr["spearman"]}


# ---- the prior on the whole truth table vs random-init sampling -------------------------------------

def prior_vs_sampling(K: np.ndarray, prior: pd.DataFrame, *, min_count: int = 10,
                      method: str = "ep", tilting_samples: int = 10_000, seed: int = 0,
                      max_functions: int = 0, show: bool = False) -> tuple[pd.DataFrame, dict]:
    """GP prior ``log10 P(f) = log10 P(sign g(X) = f)``, ``g ~ N(0, K)`` (X = every input, in the
    order of the bit strings), against the sampled prior frequency, for the functions of
    ``prior`` (rows with ``function``, ``count``, ``ones``; the ``prior`` rows of a function
    table, whose counts sum to the number of random networks) seen at least ``min_count`` times,
    most frequent first (at most ``max_functions``; 0 = all).

    Returns ``(scored, summary)``: ``scored`` holds the selected rows with ``log10_p_sampled``
    (log10 count / total), ``log10_p_gp`` and ``log10_p_gp_err`` (tilting's standard error; nan
    for EP and exact); ``summary`` holds ``method`` (``"exact"`` falls back to EP beyond
    ``EXACT_MAX_DIM`` dimensions), ``min_count``, ``n_samples`` (total count), ``n_distinct_sampled``,
    ``all`` and ``without_constant_functions`` (``n_functions``, ``pearson``, ``spearman`` of
    log10 P_GP vs log10 frequency; the two constant functions carry most of the prior mass),
    the same for ``count>=100`` / ``count>=1000``, ``mean_log10_gp_minus_sampled``,
    ``median_abs_log10_diff``, ``n_not_converged`` and ``time_s`` / ``time_per_function_s``.
    """
    K = np.asarray(K, np.float64)
    n_in = K.shape[0]
    if method not in ("ep", "exact", "minimax-tilting"):
        raise ValueError(f"method: expected 'ep', 'exact' or 'minimax-tilting', got {method!r}")
    if min_count < 1:
        raise ValueError(f"min_count: expected an integer >= 1, got {min_count!r}")
    summary: dict = {"method": method, "min_count": int(min_count)}
    if method == "exact" and n_in > EXACT_MAX_DIM:
        method = "ep"
        summary.update(method="ep", method_note=f"'exact' handles at most {EXACT_MAX_DIM} "
                       f"dimensions, the truth table has {n_in}: used EP")
    counts = prior["count"].astype(np.int64).to_numpy()
    # The runner's in-memory prior rows may be only the repeated functions (the whole table is
    # in functions.parquet): the number of samples comes from p = count / n_samples, if given.
    n_total = int(counts.sum())
    if "p" in prior and len(prior) and float(prior["p"].iloc[0]) > 0:
        n_total = int(round(float(counts[0]) / float(prior["p"].iloc[0])))
    sel = prior.assign(count=counts)
    sel = sel[sel["count"] >= min_count].sort_values(["count", "function"],
                                                    ascending=[False, True], kind="stable")
    if max_functions:
        sel = sel.head(max_functions)
    sel = sel.reset_index(drop=True)
    bits = strings_to_bits(list(sel["function"])).reshape(len(sel), -1) if len(sel) \
        else np.zeros((0, n_in), np.uint8)
    if bits.shape[1] != n_in:
        raise ValueError(f"prior_vs_sampling: functions have {bits.shape[1]} bits but K is "
                         f"{n_in} x {n_in}")
    t0 = time.perf_counter()
    lp = np.full(len(sel), np.nan)
    err = np.full(len(sel), np.nan)
    n_bad = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EP did not converge", category=RuntimeWarning)
        for i in tqdm(range(len(sel)), desc=f"gp prior ({method})", unit="fn", disable=not show,
                      dynamic_ncols=True):
            rng = np.random.default_rng([seed, STREAM["gp"], 2, i])
            opts = {} if method == "ep" else (
                {"rng": rng} if method == "exact" else {"n_samples": int(tilting_samples), "rng": rng})
            r = log_orthant_probability(K, bits[i], method, **opts)
            n_bad += r.converged is False
            lp[i] = r.log_p / _LN10 if r.converged is not False else np.nan  # not reported
            if r.rel_stderr is not None:
                err[i] = r.rel_stderr / _LN10
    dt = time.perf_counter() - t0
    x = np.log10(sel["count"].to_numpy(float) / n_total) if n_total else np.zeros(len(sel))
    sel["log10_p_sampled"], sel["log10_p_gp"], sel["log10_p_gp_err"] = x, lp, err
    ones = sel["ones"].to_numpy(np.int64)
    nonconst = (ones != 0) & (ones != n_in)
    summary.update(
        n_samples=n_total, n_distinct_sampled=int(len(prior)),
        all=correlation(x, lp), without_constant_functions=correlation(x[nonconst], lp[nonconst]),
        **{f"count>={k}": correlation(x[sel["count"].to_numpy() >= k], lp[sel["count"].to_numpy() >= k])
           for k in (100, 1000)},
        mean_log10_gp_minus_sampled=float(np.mean(lp - x)) if len(x) else None,
        median_abs_log10_diff=float(np.median(np.abs(lp - x))) if len(x) else None,
        n_not_converged=int(n_bad), time_s=dt, time_per_function_s=dt / max(len(sel), 1))
    return sel, summary


def _prior_block(cfg, model, df: pd.DataFrame, show: bool) -> tuple[pd.DataFrame, dict | None]:
    """For a Boolean run that recorded the prior: ``prior_vs_sampling`` on the kernel over all
    2^n inputs; (``gp_prior`` rows for the function table, summary); (empty, None) otherwise."""
    if not (cfg.task.kind == "boolean" and cfg.samplers.rejection.record_prior and len(df)):
        return pd.DataFrame(columns=COLUMNS), None
    prior = df[df["sampler"] == "prior"]
    if prior.empty:
        return pd.DataFrame(columns=COLUMNS), None
    from ..tasks import boolean_inputs

    gc = cfg.samplers.gp
    t0 = time.perf_counter()
    K, kernel_used, _ = gp_kernel(cfg, model, boolean_inputs(cfg.task.n))
    kernel_s = time.perf_counter() - t0
    scored, summ = prior_vs_sampling(K, prior, min_count=gc.prior_min_count, method=gc.method,
                                     tilting_samples=gc.tilting_samples, seed=cfg.seed, show=show)
    summ.update(kernel=kernel_used, kernel_time_s=kernel_s)
    lp = scored["log10_p_gp"].to_numpy(float)
    frame = pd.DataFrame({
        "sampler": PRIOR_SAMPLER, "function": scored["function"].to_numpy(object), "count": pd.NA,
        "count_half0": pd.NA, "count_half1": pd.NA, "p": 10.0 ** lp, "log10_p": lp,
        "log10_p_err": scored["log10_p_gp_err"].to_numpy(float),
        "lz": scored["lz"].to_numpy() if "lz" in scored else np.nan,
        "ones": scored["ones"].to_numpy(np.int64), "test_error": np.full(len(lp), np.nan)},
        columns=COLUMNS)  # arrays, not scalars: with columns=, pandas 3 makes a scalar NaN object
    return frame, summ


# ---- the runner's entry point -----------------------------------------------------------------------

def _conditional_vs_joint(cfg, problem: GPProblem, bits, sc: Scores, show: bool) -> dict:
    gc, dim = cfg.samplers.gp, problem.K.shape[0]
    if gc.method == "exact" and dim > EXACT_MAX_DIM:
        return {"skipped": f"joint mode with method 'exact' needs {dim} > {EXACT_MAX_DIM} dimensions"}
    t_c = time.perf_counter()
    out = compare_modes(problem, bits, method=gc.method, tilting_samples=gc.tilting_samples,
                        seed=cfg.seed, conditional=sc.log10_p, show=show)
    out["time_s"] = time.perf_counter() - t_c
    return out


def _drop_unconverged(sc: Scores, summary: dict) -> None:
    """Numbers from computations that did not converge are not reported: without ln P(S) no
    P_B(f|S) (a ratio over it) and no bound; otherwise each unconverged function's P_B is nan.
    ``summary["converged"]`` says whether all converged, and a line on stderr says so."""
    summary["converged"] = sc.n_not_converged == 0
    if summary["converged"]:
        return
    if not sc.log_P_S_converged:
        sc.log_P_S = float("nan")
        sc.log10_p[:] = np.nan
    elif sc.converged is not None:
        sc.log10_p[~sc.converged] = np.nan
    sc.log10_p_err[~np.isfinite(sc.log10_p)] = np.nan
    print(f"bayes-sgd: warning: gp: {sc.n_not_converged} of {sc.n_calls} orthant probabilities "
          f"did not converge{' (ln P(S) among them)' if not sc.log_P_S_converged else ''}; their "
          f"P_B{' and the PAC-Bayes bound' if not sc.log_P_S_converged else ''} are not reported "
          "(summary.json: gp.converged = false)", file=sys.stderr, flush=True)


def run_gp(cfg, task, model, df: pd.DataFrame, *, show: bool = False) -> tuple[pd.DataFrame, dict]:
    """Score the most frequent functions found by the counting samplers with the GP.

    Returns ``(estimate_frame("gp", ...), summary)``; the summary holds ``method``, ``mode``,
    ``kernel``, ``n_functions`` (scored), ``n_candidates`` (distinct functions found),
    ``log10_P_S``, ``pac_bayes_bound`` (delta = 0.01, from the GP ln P(S)), ``jitter`` (largest
    added to any covariance), ``all_converged`` / ``n_not_converged``, ``mass_covered``
    (sum of P_B(f|S) over the scored functions), ``duplicates``, ``wall_time_s`` and, in
    conditional mode with at most ``COMPARE_MAX_FUNCTIONS`` functions, ``conditional_vs_joint``.

    A Boolean run with ``samplers.rejection.record_prior`` (``prior`` rows in ``df``) also gets
    the GP prior P(f) of every prior function seen ``samplers.gp.prior_min_count`` times or
    more, on the whole truth table: ``gp_prior`` rows in the frame and
    ``summary["prior_vs_sampling"]`` (see ``prior_vs_sampling``).
    """
    t0 = time.perf_counter()
    gc = cfg.samplers.gp
    functions, n_found = candidate_functions(df, gc.max_functions)
    t_k = time.perf_counter()
    kernel_used, note = [None], [None]

    def kernel_fn(X):
        K, kernel_used[0], note[0] = gp_kernel(cfg, model, X)
        return K

    problem = GPProblem.from_task(task, kernel_fn)
    kernel_s = time.perf_counter() - t_k
    summary: dict = {"method": gc.method, "mode": gc.mode, "kernel": kernel_used[0],
                     "n_candidates": n_found, "n_functions": 0, "duplicates": problem.duplicates}
    if note[0]:
        summary["kernel_note"] = note[0]
    if gc.kernel == "monte-carlo" or kernel_used[0] == "monte-carlo":
        summary["mc_samples"] = gc.mc_samples
    if problem.conflict_S:
        summary.update(log10_P_S=None, pac_bayes_bound=1.0, jitter=0.0, all_converged=True, converged=True,
                       n_not_converged=0, mass_covered=0.0, kernel_time_s=kernel_s,
                       note="S labels one input both ways: P(S) = 0, nothing scored")
        prior_frame, prior_summary = _prior_block(cfg, model, df, show)
        if prior_summary is not None:
            summary["prior_vs_sampling"] = prior_summary
        summary["wall_time_s"] = time.perf_counter() - t0
        return prior_frame, _clean(summary)
    bits = strings_to_bits(functions).reshape(len(functions), task.n_test)
    sc = problem.score(bits, method=gc.method, mode=gc.mode, tilting_samples=gc.tilting_samples,
                       seed=cfg.seed, show=show)
    keep = sc.consistent
    _drop_unconverged(sc, summary)
    frame = estimate_frame("gp", [f for f, k in zip(functions, keep) if k], sc.log10_p[keep],
                           sc.log10_p_err[keep], task)
    log10_ps = sc.log_P_S / _LN10
    pac = pac_bayes_bound(min(sc.log_P_S, 0.0), task.m, delta=0.01) \
        if task.m >= 2 and math.isfinite(sc.log_P_S) else None
    lp = sc.log10_p[keep]
    summary.update(
        n_functions=int(keep.sum()),
        n_inconsistent_dropped=int((~keep).sum()),
        log10_P_S=log10_ps, log_P_S_method=sc.log_P_S_method,
        log10_P_S_err=(sc.log_P_S_rel_stderr / _LN10) if sc.log_P_S_rel_stderr is not None else None,
        pac_bayes_bound=pac,
        jitter=sc.jitter_max,
        all_converged=sc.n_not_converged == 0, n_not_converged=sc.n_not_converged,
        n_orthant_calls=sc.n_calls,
        mass_covered=float(np.sum(10.0 ** lp[np.isfinite(lp)])),
        kernel_time_s=kernel_s,
        **sc.info,
    )
    if gc.mode == "conditional" and 0 < len(functions) <= COMPARE_MAX_FUNCTIONS:
        summary["conditional_vs_joint"] = _conditional_vs_joint(cfg, problem, bits, sc, show)
    prior_frame, prior_summary = _prior_block(cfg, model, df, show)
    if prior_summary is not None:
        summary["prior_vs_sampling"] = prior_summary
        frame = pd.concat([frame, prior_frame], ignore_index=True) if len(frame) else prior_frame
    summary["wall_time_s"] = time.perf_counter() - t0
    return frame, _clean(summary)
