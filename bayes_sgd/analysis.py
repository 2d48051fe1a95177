"""Agreement between samplers: correlations of log10 P over shared functions.

For samplers that count (rejection, sgd, nuts) a function enters a comparison only if it was
seen at least ``k`` times by every counting sampler in the pair, so the Poisson noise of each
log10 p is at most ~ 0.43/sqrt(k) decades.  Each comparison is reported with and without the
target function (one dominant point must not decide the figure).  The split-half noise ceiling
of a sampler is the same correlation between two halves of its own samples (functions seen at
least ceil(k/2) times in each half, so the selected p are comparable to the full-sample cut):
agreement between two samplers near both ceilings is as good as their sample sizes allow.

Correlations over shared functions ignore where a sampler's mass sits.  ``measures`` (in
``agreement(...)["measures"]``, one entry per pair) weighs every function by P_SGD instead: the
P_SGD-weighted mean and sd of log10(P_SGD/P_B), the share of SGD's runs within 0.5 and 1 decade
of the diagonal, the P_B mass SGD's functions cover and the P_SGD mass on functions with P_B
known, the Hellinger distance and the correlations again, each with a bootstrap interval.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from scipy import stats

from .config import sampler_names

COUNTING = ("rejection", "sgd", "nuts")  # the built-in ones; sampler_names() has them all
POSTERIOR_SAMPLERS = ("rejection", "sgd", "nuts", "gp")


def correlation(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n_functions": int(len(x)), "pearson": None, "spearman": None}
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        out["pearson"] = float(stats.pearsonr(x, y)[0])
        out["spearman"] = float(stats.spearmanr(x, y)[0])
    return out


def wide(df: pd.DataFrame, value: str = "log10_p") -> pd.DataFrame:
    """One row per function, one column per sampler (posterior samplers only)."""
    sub = df[df["sampler"].isin(sampler_names())]
    return sub.pivot_table(index="function", columns="sampler", values=value, aggfunc="first")


def compare(df: pd.DataFrame, x: str, y: str, *, k: int, exclude: str | None = None) -> dict:
    """Correlation of log10 p_x vs log10 p_y over functions seen >= k times by both."""
    lp, cnt = wide(df, "log10_p"), wide(df, "count")
    if x not in lp or y not in lp:
        return correlation([], [])
    keep = lp[x].notna() & lp[y].notna()
    for s in (x, y):
        if s in sampler_names(counts=True):
            keep &= cnt[s].fillna(0).astype(float) >= k
    if exclude is not None:
        keep &= lp.index != exclude
    return correlation(lp.loc[keep, x], lp.loc[keep, y])


def split_half(df: pd.DataFrame, sampler: str, *, k: int, exclude: str | None = None) -> dict:
    sub = df[df["sampler"] == sampler]
    if sub.empty:
        return correlation([], [])
    c0 = sub["count_half0"].astype(float).to_numpy()
    c1 = sub["count_half1"].astype(float).to_numpy()
    k_half = math.ceil(k / 2)
    keep = (c0 >= k_half) & (c1 >= k_half)
    if exclude is not None:
        keep &= (sub["function"] != exclude).to_numpy()
    return correlation(np.log10(c0[keep] / c0.sum()), np.log10(c1[keep] / c1.sum()))


def agreement(df: pd.DataFrame, *, min_counts, target: str, n_boot: int | None = None) -> dict:
    """All pairwise comparisons and split-half ceilings for the samplers present, and under
    ``measures`` each pair's distribution measures with bootstrap intervals (``measures``, with
    q and p from ``pair_roles``; ``n_boot`` replicates, default ``N_BOOTSTRAP``)."""
    present = [s for s in sampler_names() if (df["sampler"] == s).any()]
    pairs = [(a, b) for i, b in enumerate(present) for a in present[i + 1:]]
    out: dict = {"pairs": {}, "split_half": {}, "measures": {}}
    for a, b in pairs:
        name = f"{a}_vs_{b}"
        out["pairs"][name] = {
            f"k={k}": {"with_target": compare(df, a, b, k=k),
                       "without_target": compare(df, a, b, k=k, exclude=target)}
            for k in min_counts}
        q, p = pair_roles(a, b)
        m = measures(df, q, p, min_counts=min_counts, target=target,
                     n_boot=N_BOOTSTRAP if n_boot is None else n_boot)
        if m is not None:
            out["measures"][name] = m
    if all(s in present for s in ("sgd", "gp", "rejection")):
        out["cross_check"] = cross_check(df)
    for s in present:
        if s in sampler_names(counts=True):
            out["split_half"][s] = {
                f"k={k}": {"with_target": split_half(df, s, k=k),
                           "without_target": split_half(df, s, k=k, exclude=target)}
                for k in min_counts}
    return out


# ---- distribution measures with bootstrap intervals (issue 11, item 3) --------------------------
#
# Correlations of log10 P over a selected set of functions can be high although almost all of
# q's mass sits on functions far off the diagonal (one dominant point, or a few shared ones,
# make the correlation).  These measures weigh every function by its probability instead.

N_BOOTSTRAP = 1000  # replicates of every bootstrap (percentile intervals)
CI_LEVEL = 0.95
BOOTSTRAP_SEED = 0
DECADES = (0.5, 1.0)  # "within d decades of the diagonal"
_Q_ORDER = ("sgd", "nuts", "rejection")  # the sampler whose samples weigh the measures
_BATCH_ELEMENTS = 2_000_000  # replicates x functions held at once
_RANGE = {"weighted_sd_log10_ratio": (0.0, np.inf), "frac_within_0.5_decades": (0.0, 1.0),
          "frac_within_1_decades": (0.0, 1.0), "q_mass_p_known": (0.0, 1.0),
          "p_mass_covered": (0.0, 1.0), "hellinger": (0.0, 1.0), "pearson": (-1.0, 1.0),
          "spearman": (-1.0, 1.0)}


def pair_roles(a: str, b: str) -> tuple[str, str]:
    """(q, p) of a pair: q, the sampler under test whose samples weigh the measures, is the
    first of sgd, nuts, rejection in the pair; p, the reference P_B, is the other."""
    for s in _Q_ORDER:
        if s in (a, b):
            return s, (b if s == a else a)
    raise ValueError(f"pair ({a}, {b}): expected one counting sampler of {list(_Q_ORDER)}")


def _masked_pearson(x, y, m):
    """Pearson of x vs y over the entries with mask m, row by row; nan with < 3 entries or no
    spread (as ``correlation``)."""
    m = m.astype(float)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(m > 0, x, 0.0)
        y = np.where(m > 0, y, 0.0)
        dx = (x - (x.sum(1) / n)[:, None]) * m
        dy = (y - (y.sum(1) / n)[:, None]) * m
        sxx, syy = (dx * dx).sum(1), (dy * dy).sum(1)
        r = (dx * dy).sum(1) / np.sqrt(sxx * syy)
    # no spread: the sums of squares are rounding residue (exact zero is not guaranteed)
    flat = (sxx <= 1e-24 * np.maximum(1.0, (x * x).sum(1))) | (syy <= 1e-24 * np.maximum(1.0, (y * y).sum(1)))
    r[(n < 3) | flat] = np.nan
    return np.clip(r, -1.0, 1.0)


def _masked_spearman(x, y, m):
    # entries outside the mask go to +inf: ranked above every selected entry, they leave the
    # selected entries' (average) ranks as among themselves, without a per-row loop
    rx = stats.rankdata(np.where(m, x, np.inf), axis=1)
    ry = stats.rankdata(np.where(m, y, np.inf), axis=1)
    return _masked_pearson(rx, ry, m)


def _measure_rows(pq, pp, cq, cp, p_counts: bool, ks, target_col, fixed=None):
    """Every measure for each row (replicate) of the arrays over the joint support.

    ``pq``, ``pp`` (B, n): P_q and P_p of the functions found by q whose P_p is known in the
    data (P_p = 0 in a replicate that drew none of p's samples on f: unknown there);
    ``cq``, ``cp``: the replicates' counts (``cp`` unused for a scoring p).  ``fixed``
    (k -> bool (n,)): the correlations' function sets, chosen once from the data (see
    ``measures``) instead of by each row's counts."""
    found_q = pq > 0
    known = found_q & (pp > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.where(found_q, np.log10(np.where(found_q, pq, 1.0)), np.nan)
        lp = np.where(pp > 0, np.log10(np.where(pp > 0, pp, 1.0)), np.nan)
        lr = np.where(known, lq - lp, 0.0)
        w = np.where(known, pq, 0.0)
        mass_known = w.sum(1)
        mean = (w * lr).sum(1) / mass_known
        sd = np.sqrt((w * (lr - mean[:, None]) ** 2).sum(1) / mass_known)
    out = {
        "weighted_mean_log10_ratio": mean,
        "weighted_sd_log10_ratio": sd,
        **{f"frac_within_{d:g}_decades": np.where(known & (np.abs(lr) <= d), pq, 0.0).sum(1)
           for d in DECADES},
        "q_mass_p_known": mass_known,
        "p_mass_covered": np.where(found_q, pp, 0.0).sum(1),
        "hellinger": np.sqrt(np.clip(1.0 - np.sqrt(pq * pp).sum(1), 0.0, None)),
    }
    for k in ks:
        if fixed is not None:
            sel = known & fixed[k][None, :]
        else:
            sel = known & (cq >= k)
            if p_counts:
                sel &= cp >= k
        cols = np.flatnonzero(sel.any(0))  # functions selected in some replicate
        sel, x, y = sel[:, cols], lq[:, cols], lp[:, cols]
        t = np.flatnonzero(cols == target_col)
        for tag in ("with_target", "without_target"):
            mask = sel
            if tag == "without_target" and len(t):
                mask = sel.copy()
                mask[:, t[0]] = False
            out[f"pearson_k={k}_{tag}"] = _masked_pearson(x, y, mask)
            out[f"spearman_k={k}_{tag}"] = _masked_spearman(x, y, mask)
    return out


def _bootstrap(df: pd.DataFrame, q: str, p: str, *, min_counts, target, n_boot: int, seed: int):
    """(point values, bootstrap replicates, values at half of q's samples, info) of
    ``measures``; None without rows."""
    if q not in sampler_names(counts=True):
        raise ValueError(f"measures: q must be a counting sampler of {list(sampler_names(counts=True))}, got {q!r}")
    sq = df[(df["sampler"] == q) & (df["count"].fillna(0).astype(float) > 0)]
    sp = df[(df["sampler"] == p) & df["p"].notna()]
    if sq.empty or sp.empty:
        return None
    p_counts = p in sampler_names(counts=True)
    cq_all = sq["count"].astype(float).to_numpy()
    wq_all = sq["p"].astype(float).to_numpy() / cq_all  # probability per sample of each function
    sp_idx = sp.set_index("function")
    pp_series = sp_idx["p"].astype(float)
    pp_all = pp_series.reindex(sq["function"]).to_numpy(float)
    joint = np.isfinite(pp_all) & (pp_all > 0)
    funcs = sq["function"].to_numpy(object)[joint]
    cq, wq, pp = cq_all[joint], wq_all[joint], pp_all[joint]
    # q's functions without a P_p form one category: they only enter through their total mass
    cq_rest, wq_rest = cq_all[~joint].sum(), (wq_all[~joint] * cq_all[~joint]).sum()
    if p_counts:
        cp = sp_idx["count"].astype(float).reindex(funcs).to_numpy(float)
        wp = pp / cp  # probability per sample (importance weights for NUTS)
    else:
        cp = np.zeros(len(funcs))
    target_col = None
    if target is not None and target in set(funcs):
        target_col = int(np.flatnonzero(funcs == target)[0])
    ks = list(min_counts)

    w_rest = wq_rest / cq_rest if cq_rest else 0.0

    def rows(cq_b, rest_b, cp_b, fixed=None):
        mass = cq_b * wq
        pq_b = mass / (mass.sum(1) + rest_b * w_rest)[:, None]
        pp_b = cp_b * wp if p_counts else np.broadcast_to(pp, cq_b.shape)
        return _measure_rows(pq_b, pp_b, cq_b, cp_b, p_counts, ks, target_col, fixed)

    point = {k: float(v[0]) for k, v in rows(cq[None, :], np.array([cq_rest]), cp[None, :]).items()}
    # The correlations' function sets (seen >= k times) are fixed by the data: re-selecting
    # them in each replicate lets functions near the threshold in and out, a jump that shifts
    # the replicates' correlations (measured: an interval of [1.0, 1.0] around r = 0.75).
    fixed = {k: (cq >= k) & ((cp >= k) if p_counts else True) for k in ks}
    boot: dict[str, list] = {k: [] for k in point}
    rng = np.random.default_rng([seed, zlib.crc32(q.encode()), zlib.crc32(p.encode())])
    batch = max(1, _BATCH_ELEMENTS // (len(funcs) + 1))
    n_q = int(round(cq_all.sum()))
    pq_cat = np.append(cq, cq_rest) / cq_all.sum()
    if p_counts:
        n_p = int(round(float(sp["count"].astype(float).sum())))
        pp_cat = np.append(cp, n_p - cp.sum()) / n_p
    done = 0
    while done < n_boot:
        b = min(batch, n_boot - done)
        draw_q = rng.multinomial(n_q, pq_cat, size=b).astype(float)
        cp_b = (rng.multinomial(n_p, pp_cat, size=b)[:, :-1].astype(float) if p_counts
                else np.zeros((b, len(funcs))))
        for k, v in rows(draw_q[:, :-1], draw_q[:, -1], cp_b, fixed).items():
            boot[k].append(v)
        done += b
    reps = {k: np.concatenate(v) if v else np.zeros(0) for k, v in boot.items()}
    # The measures at half the runs: q's samples split at random into two halves (a
    # hypergeometric draw of its counts and the complement), each half's measures, averaged.
    # Its own generator, so the bootstrap replicates (and intervals) do not depend on it.
    half = np.random.default_rng([seed, zlib.crc32(q.encode()), zlib.crc32(p.encode()), 1])
    c0 = half.multivariate_hypergeometric(np.append(cq, cq_rest).astype(np.int64), n_q // 2)
    c01 = np.stack([c0, np.append(cq, cq_rest) - c0]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):  # a half without samples (n_q = 1)
        halves = rows(c01[:, :-1], c01[:, -1], np.broadcast_to(cp, (2, len(funcs))))
    half_runs = {k: float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")
                 for k, v in halves.items()}
    return point, reps, half_runs, dict(n_functions_q=int(len(sq)), n_samples_q=n_q,
                                        n_functions_joint=int(len(funcs)),
                                        p_kind="counts" if p_counts else "score")


def measures(df: pd.DataFrame, q: str, p: str, *, min_counts=(), target: str | None = None,
             n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL) -> dict:
    """Measures of how far P_q (a counting sampler, normally SGD) is from P_p (the reference
    P_B: rejection counts or GP scores), each with a bootstrap interval.

    With P_q(f), P_p(f) the two samplers' probabilities of function f on E and
    r(f) = log10 P_q(f) / P_p(f):

    * ``weighted_mean_log10_ratio`` = sum_f P_q(f) r(f) / M and ``weighted_sd_log10_ratio`` =
      sqrt(sum_f P_q(f) (r(f) - mean)^2 / M), over the functions q found whose P_p is known,
      M = ``q_mass_p_known`` = their P_q mass (the P_q mass on functions that p's sampler also
      found, or that the GP scored);
    * ``frac_within_{0.5,1}_decades`` = sum of P_q(f) over the functions with P_p known and
      |r(f)| <= 0.5 (1): the fraction of q's samples (SGD runs) near the diagonal, out of
      *all* of q's samples (a function with P_p unknown counts as not near);
    * ``p_mass_covered`` = sum of P_p(f) over the functions q found (with a GP p: over those
      it scored; the P_B mass of the unscored ones is unknown, so this is a lower bound);
    * ``hellinger`` = sqrt(1 - sum_f sqrt(P_q(f) P_p(f))), the sum over the joint support: a
      function missing from one side has probability 0 there (its estimate from the counts),
      so it adds nothing to the Bhattacharyya sum.  For a GP p, the functions it did not score
      are treated the same way; their true terms are >= 0, so this is an upper bound on H.
      With counts on both sides, sampling noise alone makes H > 0 (singletons rarely repeat);
    * ``pearson_k=K_*`` / ``spearman_k=K_*``: the correlations of ``compare`` (functions seen
      >= K times by every counting side, with and without the target).

    Functions with P_p unknown (q found them; rejection never accepted a network computing
    them, or the GP did not score them, e.g. beyond ``samplers.gp.max_functions``) are left out
    of the mean, the sd and the correlations, counted as not near the diagonal, and their P_q
    mass is 1 - ``q_mass_p_known``.  With rejection, a function P_SGD puts mass on and
    rejection never found may well be far off the diagonal, so read the mean with that mass.

    Bootstrap: ``n_boot`` replicates (default 1000, seed ``seed`` and the pair's names).  A
    counting sampler's samples are resampled as one multinomial draw over its function counts
    (its total fixed): SGD runs, rejection's accepted networks (as if independent: with
    ``output_draws`` > 1 they are not, and the intervals are too narrow by up to the square root
    of the design effect); NUTS rows (importance-weighted p) keep each function's weight per
    sample.  A GP P_p is a deterministic score of the function, not a count: it is held fixed,
    so the intervals cover the counting sampler's sampling noise only, not EP's error (it errs
    low by up to ~0.1 decades on probable patterns, ``benchmarks/bench_ep_accuracy.py``) nor the
    finite-width gap between the network and its NNGP.  Each measure gets:

    * ``bias`` = mean of the replicates - v: the bootstrap estimate of the plug-in's bias, and
      ``value_bias_corrected`` = v - ``bias`` (clipped to the measure's range);
    * ``ci``: the 95 % (``level``) *basic* bootstrap interval [2 v - b_hi, 2 v - b_lo] (b_lo,
      b_hi: the replicates' percentiles; clipped to the measure's range).  It is the
      replicates' spread reflected about v, so it is centred near ``value_bias_corrected``, not
      near v: it is an interval for the measure's value at infinitely many runs, corrected for
      the bias the bootstrap sees, and it excludes v itself whenever that bias exceeds about
      half its width (batch 1 at paper scale, 10^5 runs: weighted mean +1.126, bias +0.008,
      interval [1.115, 1.122]).  Not the plain percentile interval [b_lo, b_hi], which sits
      off-centre by twice the bias: in a simulation of 20 functions, 2,000 samples a side and
      log ratios of sd 0.4 decades it covered the true weighted mean in 81 % of 200 data sets,
      the basic one in 95.5 %.  In ``tests/test_agreement_measures.py`` (20 functions, 5,000
      samples a side) the basic intervals covered 93-97 % for every measure but Spearman's, 87 %
      (noise reorders functions of nearly equal P: a rank correlation's attenuation the
      bootstrap does not undo).  Drawn here rather than by ``scipy.stats.bootstrap``: that
      resamples individual observations (the same scheme as a multinomial over the counts, but
      10^5 runs per replicate instead of K counts), and its BCa interval needs a jackknife over
      every run, 10^5 statistics of 10^5 runs each at paper scale;
    * ``value_half_runs``: the measure from half of q's samples (a random half and its
      complement, averaged; p's samples all kept), i.e. what the same experiment reports with
      half the runs.  v - ``value_half_runs`` is how far the measure moved when the runs doubled.

    These measures are plug-in functionals of P_q estimated from counts, so they depend on the
    number of runs N: a function seen once has P_q = 1/N, the entropy-like sum P_q log P_q is
    biased by ~(K - 1) / (2 N ln 10) decades with K functions, and ``p_mass_covered`` grows as
    runs find more functions.  The bootstrap sees only the functions the runs found, so where
    many functions are seen once it underestimates the bias, and the intervals do not cover the
    large-N value.  Measured by subsampling the paper-scale tables (``benchmarks/
    measures_vs_runs.py``; batch 1, target 4, GP P_B; means over 5 subsamples): the weighted
    mean falls 1.302 / 1.172 / 1.143 / 1.126 decades at N = 10^3 / 10^4 / 3 10^4 / 10^5 (about
    N^-0.45, not 1/N), the share within a decade rises 19.7 / 29.5 / 33.3 / 34.1 %; at 10^4
    runs the bootstrap bias of the mean was +0.022 and the interval's half-width 0.010, against
    a fall of 0.046 to 10^5 runs (0 of 5 intervals at 10^4 held the 10^5 value).  In a
    simulation where most functions are never seen (Zipf P_SGD over 400 functions, 300 runs,
    ``tests/test_agreement_measures.py``) the interval of the weighted mean held the true value
    in 1 of 100 data sets, that of the share within a decade in 27, and the bias-corrected mean
    removed 43 % of the plug-in's bias (0.22 decades).  The shares within d decades are
    threshold counts, not smooth in the counts, and their bootstrap bias can even have the wrong
    sign (target 4 at 10^4 runs: -1.0 points, where the share at 10^5 runs is 0.2 points lower).
    Read a
    measure with its N, and compare settings only at equal N (``figures.subsample_runs``); a
    ``value_half_runs`` far from v (compared with the interval's width) says the interval is
    not a statement about the large-N value.  The correlations' intervals are conditional on
    their function set: the functions seen >= K times in the data, with their counts resampled
    (one that a replicate draws no sample of drops out of that replicate).  Replicates where a
    measure is undefined (e.g. < 3 functions for a correlation) are left out of its interval
    and bias; ``n_defined`` says how many remain where that is fewer than ``n_boot``.

    Returns ``{"q", "p", "p_kind" ("counts" or "score"), "n_bootstrap", "ci_level",
    "n_functions_q", "n_samples_q", "n_functions_joint", "values": {measure: {"value",
    "ci": [lo, hi], "bias", "value_bias_corrected", "value_half_runs"}}}``, or ``None`` when
    either sampler has no rows.
    """
    res = _bootstrap(df, q, p, min_counts=min_counts, target=target, n_boot=n_boot, seed=seed)
    if res is None:
        return None
    point, reps, half_runs, info = res
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    values = {}
    for k, v in point.items():
        r = reps[k][np.isfinite(reps[k])]
        rng_k = _RANGE.get(k.split("_k=")[0], (-np.inf, np.inf))
        ci = bias = corrected = None
        if len(r) and math.isfinite(v):
            # basic bootstrap: the replicates' spread reflected about the estimate
            lo, hi = np.clip([2 * v - np.percentile(r, hi_q), 2 * v - np.percentile(r, lo_q)],
                             *rng_k)
            ci = [float(lo), float(hi)]
            bias = float(r.mean() - v)
            corrected = float(np.clip(v - bias, *rng_k))
        h = half_runs.get(k, float("nan"))
        entry = {"value": v if math.isfinite(v) else None, "ci": ci, "bias": bias,
                 "value_bias_corrected": corrected,
                 "value_half_runs": h if math.isfinite(h) else None}
        if len(r) < n_boot:
            entry["n_defined"] = int(len(r))
        values[k] = entry
    return {"q": q, "p": p, "p_kind": info["p_kind"], "n_bootstrap": int(n_boot),
            "ci_level": level, "n_functions_q": info["n_functions_q"],
            "n_samples_q": info["n_samples_q"],
            "n_functions_joint": info["n_functions_joint"], "values": values}


# ---- fitted statistics of the rank and complexity plots (``plotting`` draws them) -------------
# With N samples every function seen once sits at P = 1/N: for the n = 7 prior most distinct
# functions are such singletons, and a fit over all of them describes the sampling floor, not
# P(f).  ``zipf_fit`` fits only functions seen at least ``min_count`` times.

def rank_fit(df: pd.DataFrame, sampler: str = "prior") -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log10 P = intercept + slope log10 rank, the
    line ``rank_plot`` draws (all ranked functions, probabilities in decreasing order)."""
    p = np.sort(df.loc[df["sampler"] == sampler, "p"].to_numpy(float))[::-1]
    p = p[p > 0]
    if len(p) < 2:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(np.log10(np.arange(1, len(p) + 1)), np.log10(p), 1)
    return float(slope), float(icpt)


def bound_fit(df: pd.DataFrame, sampler: str = "prior") -> tuple[float, float]:
    """(slope, intercept) of the line ``complexity_plot`` draws: a least-squares fit of the
    largest log10 P at each C_LZ value (the simplicity-bias upper bound a - b C_LZ)."""
    sub = df[(df["sampler"] == sampler) & df["log10_p"].notna()]
    top = sub.groupby("lz")["log10_p"].max()
    if len(top) < 2:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(top.index.to_numpy(float), top.to_numpy(float), 1)
    return float(slope), float(icpt)


def _resolved(df: pd.DataFrame, sampler: str, min_count: int):
    sub = df[(df["sampler"] == sampler) & df["p"].notna()]
    order = np.argsort(-sub["p"].to_numpy(float), kind="stable")
    sub = sub.iloc[order]
    counts = sub["count"].astype(float).to_numpy() if "count" in sub else np.full(len(sub), np.inf)
    return sub, counts >= min_count


def zipf_fit(df: pd.DataFrame, sampler: str = "prior", *, min_count: int = 10):
    """(slope, intercept, n) of log10 P = intercept + slope log10 rank over the functions seen
    >= ``min_count`` times (ranks 1..n: they are the most probable ones)."""
    sub, ok = _resolved(df, sampler, min_count)
    p = sub["p"].to_numpy(float)[ok]
    if len(p) < 3:
        return float("nan"), float("nan"), int(len(p))
    slope, icpt = np.polyfit(np.log10(np.arange(1, len(p) + 1)), np.log10(p), 1)
    return float(slope), float(icpt), int(len(p))


def cross_check(df: pd.DataFrame, *, q: str = "sgd", p: str = "gp", ref: str = "rejection",
                n: int = 20) -> dict:
    """The GP's P_B against rejection's counts on q's ``n`` most frequent functions.

    For each function f: P_q(f), the GP's P_B(f|S), rejection's count c(f) out of its A accepted
    networks, and the count the GP predicts, A P_B(f|S).  Under P_B = the GP's, c(f) is binomial
    (A, P_B(f|S)) for independent draws, so ``z = (c - A P_B) / sqrt(A P_B (1 - P_B))``; with
    ``samplers.rejection.output_draws`` > 1 the accepted networks of one hidden draw are
    correlated and z overstates the evidence by up to the square root of the design effect
    (``summary.rejection.ess``).  A function the GP did not score has ``p_b`` None.
    """
    rows_q = df[df["sampler"] == q].sort_values("count", ascending=False, kind="stable").head(n)
    gp = df[df["sampler"] == p].set_index("function")["p"].astype(float)
    rej = df[df["sampler"] == ref].set_index("function")["count"].astype(float)
    A = float(rej.sum())
    table = []
    for f, pq in zip(rows_q["function"], rows_q["p"].astype(float)):
        pb = float(gp[f]) if f in gp.index and math.isfinite(gp[f]) else None
        c = float(rej.get(f, 0.0))
        exp = A * pb if pb is not None else None
        z = ((c - exp) / math.sqrt(exp * (1 - pb)) if exp and 0 < pb < 1 else None)
        table.append({"function": f, "p_q": pq, "p_b": pb, "count_ref": int(c),
                      "expected_count_ref": exp, "z": z})
    return {"q": q, "p": p, "ref": ref, "n_accepted_ref": int(A), "functions": table}
