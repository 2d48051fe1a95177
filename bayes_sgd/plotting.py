"""Figures of the paper from a function table (seaborn/matplotlib).

All functions take the tidy table of ``functions.parquet`` (or ``bayes_sgd.results.load``)
and draw on a given ``ax`` when one is passed, so they compose into grids in notebooks.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .analysis import (_resolved, bound_fit, compare, measures, pair_roles, rank_fit,  # noqa: F401
                       wide, zipf_fit)
from .config import sampler_names

LABELS = {"rejection": r"$P_B(f|S)$ (rejection)", "sgd": r"$P_{SGD}(f|S)$",
          "gp": r"$P_B(f|S)$ (GP-EP)", "nuts": r"$P_B(f|S)$ (NUTS)", "prior": r"$P(f)$"}
_SHORT = {"sgd": "SGD", "rejection": "B", "gp": "GP", "nuts": "NUTS"}


def scatter(df: pd.DataFrame, x: str = "rejection", y: str = "sgd", *, k: int = 1,
            color: str | None = "lz", ax=None, annotate: bool = True):
    """log10 P_y vs log10 P_x over functions found by both, diagonal drawn, decades marked."""
    ax = ax or plt.gca()
    lp, cnt = wide(df, "log10_p"), wide(df, "count")
    keep = lp.get(x, pd.Series(dtype=float)).notna() & lp.get(y, pd.Series(dtype=float)).notna()
    for s in (x, y):
        if s in sampler_names(counts=True) and s in cnt:
            keep &= cnt[s].fillna(0).astype(float) >= k
    sub = lp.loc[keep]
    if sub.empty:
        ax.text(0.5, 0.5, "no function found by both", ha="center", transform=ax.transAxes)
        return ax
    c = None
    if color:
        attrs = df.drop_duplicates("function").set_index("function")[color]
        c = attrs.reindex(sub.index).to_numpy(float)
    pts = ax.scatter(sub[x], sub[y], c=c, cmap="viridis", s=14, alpha=0.8, edgecolors="none",
                     zorder=3)
    if color:
        plt.colorbar(pts, ax=ax, label={"lz": r"$C_{LZ}$", "test_error": "test error"}.get(color, color))
    (xlo, xhi), (ylo, yhi) = scatter_limits(sub[x].to_numpy(float), sub[y].to_numpy(float))
    d_lo, d_hi = max(xlo, ylo), min(xhi, yhi)
    if d_lo < d_hi:
        ax.plot([d_lo, d_hi], [d_lo, d_hi], "k--", lw=1, label="y = x")
    else:  # the diagonal misses the data's box: say by how far instead of drawing it
        off = float(np.median(sub[y] - sub[x]))
        ax.text(0.97, 0.03, f"y = x off the axes\nmedian log10 y/x = {off:+.1f}",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox=dict(fc="white", alpha=0.8, lw=0))
    ax.set_xlim(xlo, xhi), ax.set_ylim(ylo, yhi)
    for lim, set_ticks, set_labels in ((ax.get_xlim(), ax.set_xticks, ax.set_xticklabels),
                                       (ax.get_ylim(), ax.set_yticks, ax.set_yticklabels)):
        ticks = decade_ticks(*lim)
        set_ticks(ticks)
        set_labels([f"$10^{{{int(t)}}}$" for t in ticks])
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(LABELS.get(x, x)), ax.set_ylabel(LABELS.get(y, y))
    if annotate:
        r = compare(df, x, y, k=k)
        lines = []
        if r["pearson"] is not None:
            lines += [f"n = {r['n_functions']}", f"Pearson {r['pearson']:.2f}",
                      f"Spearman {r['spearman']:.2f}"]
        lines += _measure_lines(df, x, y)
        if lines:
            # lower right: below the diagonal, away from SGD's functions when P_SGD > P_B
            ax.text(0.97, 0.03, "\n".join(lines), transform=ax.transAxes, va="bottom",
                    ha="right", fontsize=8, bbox=dict(fc="white", alpha=0.8, lw=0), zorder=1)  # under the points
    return ax


def _measure_lines(df: pd.DataFrame, x: str, y: str) -> list[str]:
    """The weighted mean of log10(P_q/P_p) and the share of q's samples within a decade of the
    diagonal (``analysis.measures``, point values, all functions: not only the k-selected
    ones drawn), q the counting sampler of the pair."""
    try:
        q, p = pair_roles(x, y)
    except ValueError:
        return []
    m = measures(df, q, p, n_boot=0) if q in sampler_names(counts=True) else None
    if m is None:
        return []
    v = m["values"]
    mean, within = v["weighted_mean_log10_ratio"]["value"], v["frac_within_1_decades"]["value"]
    out = []
    if mean is not None:
        out.append(f"$\\langle\\log_{{10}} P_{{{_SHORT.get(q, q)}}}/P_{{{_SHORT.get(p, p)}}}"
                   f"\\rangle$ = {mean:+.2f}")
    if within is not None:
        out.append(f"{100 * within:.0f} % of {q} within 1 decade")
    return out


def scatter_limits(x, y, *, pad: float = 0.25, min_span: float = 1.0):
    """Axis limits (in log10 units) for a log10 P_y vs log10 P_x scatter that fit the data.

    Each axis covers its data plus ``pad`` decades (at least ``min_span``), never above
    ``pad`` (P <= 1).  When the two ranges overlap, both axes get their union, so y = x is the
    diagonal of a square plot; when they are disjoint (e.g. P_SGD >= 1e-3 and P_B ~ 1e-11),
    each keeps its own range instead of a shared one that squeezes the points into a corner.
    Returns ``((xlo, xhi), (ylo, yhi))``.
    """
    def one(v):
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if not len(v):
            return -1.0 - pad, pad
        lo, hi = float(v.min()) - pad, min(float(v.max()) + pad, pad)
        if hi - lo < min_span:
            mid = 0.5 * (lo + hi)
            lo, hi = mid - min_span / 2, mid + min_span / 2
            if hi > pad:
                lo, hi = lo - (hi - pad), pad
        return lo, hi

    (xlo, xhi), (ylo, yhi) = one(x), one(y)
    if max(xlo, ylo) < min(xhi, yhi):
        lo, hi = min(xlo, ylo), max(xhi, yhi)
        return (lo, hi), (lo, hi)
    return (xlo, xhi), (ylo, yhi)


def decade_ticks(lo: float, hi: float, max_ticks: int = 8) -> np.ndarray:
    """Whole decades in [lo, hi], every 1, 2, 3, ... decades so at most ``max_ticks``."""
    first, last = int(np.ceil(lo)), int(np.floor(hi))
    if last < first:
        return np.array([float(round(0.5 * (lo + hi)))])
    step = max(1, int(np.ceil((last - first + 1) / max_ticks)))
    return np.arange(first, last + 1, step, dtype=float)


def scatter_panels(df: pd.DataFrame, path: Path | None = None, *, k: int = 1, title: str = ""):
    """P_SGD vs P_B (rejection), and the GP / NUTS panels when those samplers ran."""
    present = set(df["sampler"])
    pairs = [(x, y) for x, y in [("rejection", "sgd"), ("gp", "sgd"), ("gp", "rejection"),
                                 ("nuts", "sgd"), ("rejection", "nuts")]
             if x in present and y in present]
    if not pairs:
        pairs = [("rejection", "sgd")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.6 * len(pairs), 4.8), squeeze=False)
    for ax, (x, y) in zip(axes[0], pairs):
        scatter(df, x, y, k=k, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def rank_plot(df: pd.DataFrame, sampler: str = "prior", *, ax=None, fit: bool = True):
    """Zipf plot: P(f) against its rank, log-log, with a least-squares line."""
    ax = ax or plt.gca()
    p = np.sort(df.loc[df["sampler"] == sampler, "p"].to_numpy(float))[::-1]
    rank = np.arange(1, len(p) + 1)
    ax.loglog(rank, p, ".", ms=3, label=sampler)
    if fit and len(p) > 10:
        slope, icpt = np.polyfit(np.log10(rank), np.log10(p), 1)
        ax.loglog(rank, 10 ** (icpt + slope * np.log10(rank)), "r-", lw=1,
                  label=f"fit: slope {slope:.2f}")
    ax.set_xlabel("rank"), ax.set_ylabel(LABELS.get(sampler, sampler)), ax.legend()
    return ax


def complexity_plot(df: pd.DataFrame, sampler: str = "prior", *, ax=None, bound: bool = True):
    """Simplicity bias: log10 P(f) vs C_LZ, with the line a - b C_LZ through the upper points."""
    ax = ax or plt.gca()
    sub = df[df["sampler"] == sampler]
    ax.scatter(sub["lz"], sub["log10_p"], s=6, alpha=0.5)
    if bound and len(sub) > 10:
        top = sub.groupby("lz")["log10_p"].max()
        slope, icpt = np.polyfit(top.index.to_numpy(float), top.to_numpy(float), 1)
        xs = np.linspace(sub["lz"].min(), sub["lz"].max(), 50)
        ax.plot(xs, icpt + slope * xs, "r--", lw=1, label=f"upper bound fit: slope {slope:.3f}")
        ax.legend()
    ax.set_xlabel(r"$C_{LZ}$"), ax.set_ylabel(r"$\log_{10}$ " + LABELS.get(sampler, sampler))
    return ax


def error_vs_complexity(df: pd.DataFrame, sampler: str = "sgd", *, ax=None):
    """Generalisation error of the functions a sampler found against their complexity."""
    ax = ax or plt.gca()
    sub = df[df["sampler"] == sampler]
    sns.scatterplot(data=sub, x="lz", y="test_error", size="count", ax=ax, legend=False)
    ax.set_xlabel(r"$C_{LZ}$"), ax.set_ylabel("test error")
    return ax


def epochs_histogram(runs: pd.DataFrame, *, ax=None):
    ax = ax or plt.gca()
    sns.histplot(runs.loc[runs["fitted"], "epochs_to_fit"], log_scale=(True, False), ax=ax)
    ax.set_xlabel("epochs to 100 % training accuracy")
    return ax


# ---- grids and fits for several runs (bayes_sgd.results.join) -------------------------------

def _panel_values(df: pd.DataFrame, name: str | None) -> list:
    if name is None:
        return [None]
    col = df[name]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [v for v in col.cat.categories if (col == v).any()]
    return list(dict.fromkeys(col.dropna().tolist()))


def grid(df: pd.DataFrame, row: str | None = None, col: str | None = "run", *,
         x: str = "rejection", y: str = "sgd", k: int = 1, color: str | None = "lz",
         height: float = 3.6, titles: dict | None = None, path: Path | None = None):
    """A grid of ``scatter`` panels, one per (row value, col value) of a joined table.

    ``df``: ``bayes_sgd.results.join(...)`` output (or any function table with the ``row`` /
    ``col`` columns), e.g. ``grid(df, row="optimizer", col="batch_size")``.  ``titles`` maps a
    panel's value (or (row, col) pair) to its title.  Returns the figure.
    """
    if col is not None and col not in df:
        if col == "run":
            col = None
        else:
            raise KeyError(f"grid: no column {col!r} in the table")
    if row is not None and row not in df:
        raise KeyError(f"grid: no column {row!r} in the table")
    rows, cols = _panel_values(df, row), _panel_values(df, col)
    fig, axes = plt.subplots(len(rows), len(cols), squeeze=False,
                             figsize=((height * 1.2 + 0.6) * len(cols), height * len(rows)))
    titles = titles or {}
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = axes[i, j]
            keep = np.ones(len(df), bool)
            if row is not None:
                keep &= (df[row] == rv).to_numpy()
            if col is not None:
                keep &= (df[col] == cv).to_numpy()
            sub = df[keep]
            if sub.empty:
                ax.set_axis_off()
                continue
            scatter(sub, x, y, k=k, color=color, ax=ax)
            key = (rv, cv) if row is not None and col is not None else (cv if col is not None else rv)
            default = " | ".join(str(v) if n == "run" else f"{n} = {v}"
                                 for n, v in ((row, rv), (col, cv)) if n is not None)
            ax.set_title(titles.get(key, default), fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def epochs_by_run(runs: pd.DataFrame, *, ax=None):
    """Cumulative distribution of epochs to 100 % training accuracy, one line per run
    (``bayes_sgd.results.join_runs`` output; a single runs table works too)."""
    ax = ax or plt.gca()
    groups = runs.groupby("run", observed=True) if "run" in runs else [("sgd", runs)]
    for name, r in groups:
        e = np.sort(r.loc[r["fitted"].astype(bool), "epochs_to_fit"].to_numpy(float))
        if len(e):
            ax.step(np.maximum(e, 0.5), np.arange(1, len(e) + 1) / len(r), where="post",
                    label=f"{name} (median {np.median(e):g})")
    ax.set_xscale("log")
    ax.set_xlabel("epochs to 100 % training accuracy"), ax.set_ylabel("fraction of runs fitted")
    ax.set_ylim(0, 1.02), ax.grid(True, alpha=0.3), ax.legend(fontsize=8)
    return ax


# ---- rank and complexity plots fitted on the resolved functions only ---------------------------
# With N samples every function seen once sits at P = 1/N: for the n = 7 prior most distinct
# functions are such singletons, and a fit over all of them describes the sampling floor, not
# P(f).  These variants fit only functions seen at least ``min_count`` times.

def zipf_plot(df: pd.DataFrame, sampler: str = "prior", *, min_count: int = 10, ax=None):
    """Rank plot of every function, the resolved ones (seen >= ``min_count`` times) marked and
    fitted, with the one-sample floor 1/N drawn."""
    ax = ax or plt.gca()
    sub, ok = _resolved(df, sampler, min_count)
    p = sub["p"].to_numpy(float)
    rank = np.arange(1, len(p) + 1)
    ax.loglog(rank[~ok], p[~ok], ".", ms=2, color="0.6", label=f"seen < {min_count} times")
    ax.loglog(rank[ok], p[ok], ".", ms=3, color="C0", label=f"seen >= {min_count} times")
    slope, icpt, n = zipf_fit(df, sampler, min_count=min_count)
    if n >= 3:
        r = np.array([1, n])
        ax.loglog(r, 10 ** (icpt + slope * np.log10(r)), "r-", lw=1.2,
                  label=f"fit over {n} resolved: slope {slope:.2f}")
    if "count" in sub and len(sub):
        total = sub["count"].astype(float).sum()
        ax.axhline(1 / total, color="0.4", ls=":", lw=0.8, label="seen once (1/N)")
    ax.set_xlabel("rank"), ax.set_ylabel(LABELS.get(sampler, sampler))
    ax.legend(fontsize=8, loc="upper right")
    return ax


def simplicity_fit(df: pd.DataFrame, sampler: str = "prior", *, min_count: int = 10):
    """(slope, intercept) of the upper bound log10 P <= intercept + slope C_LZ over the
    resolved functions (seen >= ``min_count`` times): the slope of a least-squares line through
    the most probable one at each C_LZ value, the intercept raised until no resolved function
    lies above the line."""
    sub, ok = _resolved(df, sampler, min_count)
    top = sub[ok].groupby("lz")["log10_p"].max()
    if len(top) < 2:
        return float("nan"), float("nan")
    x, y = top.index.to_numpy(float), top.to_numpy(float)
    slope = np.polyfit(x, y, 1)[0]
    return float(slope), float(np.max(y - slope * x))


def simplicity_plot(df: pd.DataFrame, sampler: str = "prior", *, min_count: int = 10, ax=None):
    """log10 P(f) vs C_LZ for every function, the upper-bound line fitted on resolved ones."""
    ax = ax or plt.gca()
    sub, ok = _resolved(df, sampler, min_count)
    ax.scatter(sub["lz"][~ok], sub["log10_p"][~ok], s=4, color="0.6", alpha=0.4,
               label=f"seen < {min_count} times")
    ax.scatter(sub["lz"][ok], sub["log10_p"][ok], s=8, color="C0", alpha=0.7,
               label=f"seen >= {min_count} times")
    slope, icpt = simplicity_fit(df, sampler, min_count=min_count)
    if np.isfinite(slope):
        xs = np.linspace(sub["lz"].min(), sub["lz"].max(), 50)
        ax.plot(xs, icpt + slope * xs, "r--", lw=1.2,
                label=f"upper bound: {icpt:.2f} {slope:+.3f} " + r"$C_{LZ}$")
        lp = sub["log10_p"].to_numpy(float)
        ax.set_ylim(np.nanmin(lp) - 0.5, max(np.nanmax(lp), icpt + slope * xs[0]) + 0.3)
    ax.set_xlabel(r"$C_{LZ}$"), ax.set_ylabel(r"$\log_{10}$ " + LABELS.get(sampler, sampler))
    ax.legend(fontsize=8, loc="upper right")
    return ax
