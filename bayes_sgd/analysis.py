"""Agreement between samplers: correlations of log10 P over shared functions.

For samplers that count (rejection, sgd, nuts) a function enters a comparison only if it was
seen at least ``k`` times by every counting sampler in the pair, so the Poisson noise of each
log10 p is at most ~ 0.43/sqrt(k) decades.  Each comparison is reported with and without the
target function (one dominant point must not decide the figure).  The split-half noise ceiling
of a sampler is the same correlation between two halves of its own samples (functions seen at
least ceil(k/2) times in each half, so the selected p are comparable to the full-sample cut):
agreement between two samplers near both ceilings is as good as their sample sizes allow.
"""
from __future__ import annotations

import math

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


def agreement(df: pd.DataFrame, *, min_counts, target: str) -> dict:
    """All pairwise comparisons and split-half ceilings for the samplers present."""
    present = [s for s in sampler_names() if (df["sampler"] == s).any()]
    pairs = [(a, b) for i, b in enumerate(present) for a in present[i + 1:]]
    out: dict = {"pairs": {}, "split_half": {}}
    for a, b in pairs:
        name = f"{a}_vs_{b}"
        out["pairs"][name] = {
            f"k={k}": {"with_target": compare(df, a, b, k=k),
                       "without_target": compare(df, a, b, k=k, exclude=target)}
            for k in min_counts}
    for s in present:
        if s in sampler_names(counts=True):
            out["split_half"][s] = {
                f"k={k}": {"with_target": split_half(df, s, k=k),
                           "without_target": split_half(df, s, k=k, exclude=target)}
                for k in min_counts}
    return out


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
