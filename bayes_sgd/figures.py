"""Draw a reproduced figure from its results folders and measure the numbers it shows.

Each ``draw_*`` takes ``{run name: results folder}`` (in the figure's run order) and returns
``(matplotlib figure, metrics dict)``; ``bayes_sgd.reproduce`` saves both.  Notebooks can call
them too.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from scipy import stats

from . import plotting, results
from .analysis import COUNTING, compare, measures, pair_roles

__all__ = ["draw_prior", "draw_comparison", "comparison_metrics", "prior_metrics",
           "mean_test_error", "draw_sensitivity", "sensitivity_metrics", "sensitivity_markdown",
           "subsample_runs"]


def mean_test_error(df: pd.DataFrame, sampler: str) -> float | None:
    """Expected test error on E of the functions a sampler found, weighted by their P."""
    sub = df[(df["sampler"] == sampler) & df["p"].notna()]
    if sub.empty or sub["p"].sum() == 0:
        return None
    return float((sub["test_error"] * sub["p"]).sum() / sub["p"].sum())


def _r(x, nd=3):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


# ---- (a) prior: simplicity bias ------------------------------------------------------------------

def prior_metrics(df: pd.DataFrame, summary: dict | None = None, min_count: int = 10) -> dict:
    prior = df[df["sampler"] == "prior"]
    slope, icpt = plotting.rank_fit(df, "prior")
    bslope, bicpt = plotting.bound_fit(df, "prior")
    zslope, zicpt, n_res = plotting.zipf_fit(df, "prior", min_count=min_count)
    sslope, sicpt = plotting.simplicity_fit(df, "prior", min_count=min_count)
    top = prior.sort_values("count", ascending=False).head(1)
    rho = stats.spearmanr(prior["lz"], prior["log10_p"])[0] if len(prior) > 2 else float("nan")
    res = prior[prior["count"].astype(float) >= min_count]
    rho_res = stats.spearmanr(res["lz"], res["log10_p"])[0] if len(res) > 2 else float("nan")
    out = {
        "n_samples": int(prior["count"].astype(float).sum()),
        "n_functions": int(len(prior)),
        "n_functions_seen_once": int((prior["count"].astype(float) == 1).sum()),
        f"n_functions_seen_{min_count}_times": n_res,
        f"rank_slope_seen_{min_count}_times": _r(zslope),
        f"bound_slope_per_C_LZ_seen_{min_count}_times": _r(sslope, 4),
        f"bound_intercept_seen_{min_count}_times": _r(sicpt),
        f"spearman_log10P_vs_C_LZ_seen_{min_count}_times": _r(rho_res),
        "rank_slope_all": _r(slope), "bound_slope_per_C_LZ_all": _r(bslope, 4),
        "spearman_log10P_vs_C_LZ_all": _r(rho),
        "top_function_P": _r(float(top["p"].iloc[0]), 4) if len(top) else None,
        "top_function_C_LZ": _r(float(top["lz"].iloc[0]), 1) if len(top) else None,
    }
    if summary and "rejection" in summary:
        out["log10_P_S"] = _r(summary["rejection"].get("log10_P_S_sampled"))
    return out


def draw_prior(folders: dict[str, Path], min_count: int = 10):
    """Zipf plot and P(f) vs C_LZ of the prior, fitted on functions seen >= min_count times."""
    (name, folder), = folders.items()
    r = results.load(folder)
    df = r.functions
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    plotting.zipf_plot(df, "prior", min_count=min_count, ax=axes[0])
    axes[0].set_title("P(f) by rank (Zipf)")
    plotting.simplicity_plot(df, "prior", min_count=min_count, ax=axes[1])
    axes[1].set_title(r"simplicity bias: P(f) vs $C_{LZ}$")
    n = r.config.get("task", {}).get("n")
    total = int(df.loc[df["sampler"] == "prior", "count"].astype(float).sum())
    fig.suptitle(f"prior of the FCN on all 2^{n} inputs, {total:,} samples")
    fig.tight_layout()
    return fig, {name: prior_metrics(df, r.summary, min_count)}


# ---- (b)-(f) P_SGD vs P_B, one panel per run --------------------------------------------------------

def comparison_metrics(df: pd.DataFrame, summary: dict, x: str = "rejection", y: str = "sgd",
                       min_counts=(1, 2, 5)) -> dict:
    target = summary.get("task", {}).get("target_on_E")
    out: dict = {}
    for s in (x, y):
        sub = df[df["sampler"] == s]
        out[f"{s}_n_functions"] = int(len(sub))
        if "count" in sub and sub["count"].notna().any():
            out[f"{s}_n_counted"] = int(sub["count"].astype(float).sum())
        out[f"{s}_mean_test_error"] = _r(mean_test_error(df, s), 4)
    for k in min_counts:
        c = compare(df, x, y, k=k)
        out[f"k={k}"] = {"n_functions": c["n_functions"], "pearson": _r(c["pearson"]),
                         "spearman": _r(c["spearman"])}
    w = df[df["sampler"].isin([x, y])].pivot_table(index="function", columns="sampler",
                                                    values="p", aggfunc="first")
    if y in w and len(w[y].dropna()):
        f = w[y].idxmax()
        out[f"top_{y}_function"] = {f"P_{y}": _r(w.loc[f, y], 4),
                                    f"P_{x}": _r(w.loc[f, x], 4) if x in w and pd.notna(w.loc[f, x]) else None,
                                    "is_target": f == target}
    try:
        q, p = pair_roles(x, y)
    except ValueError:
        q = None
    m = measures(df, q, p) if q in COUNTING else None
    if m is not None:
        out["measures"] = {k: {"value": _r(v["value"]),
                               "ci": [_r(c) for c in v["ci"]] if v["ci"] else None,
                               "bias": _r(v.get("bias")),
                               "value_half_runs": _r(v.get("value_half_runs"))}
                           for k, v in m["values"].items() if "_k=" not in k}
    if "sgd" in summary:
        out["epochs_to_fit_median"] = summary["sgd"].get("epochs_to_fit_median")
        out["sgd_fitted"] = f"{summary['sgd']['n_fitted']}/{summary['sgd']['n_runs']}"
    return out


def draw_comparison(folders: dict[str, Path], *, reference: str | None = None,
                    x: str = "rejection", y: str = "sgd", titles: dict | None = None,
                    color: str = "lz", k: int = 1):
    """One scatter panel per run (the reference run's P_B shared), epochs-to-fit below."""
    runs = {n: f for n, f in folders.items() if n != reference}
    ref = folders.get(reference) if reference else None
    df = results.join(list(runs.values()), labels=list(runs), reference=ref)
    loaded = {n: results.load(f) for n, f in runs.items()}
    ref_summary = results.load(ref).summary if ref else {}
    rj = results.join_runs(list(loaded.values()), labels=list(runs))
    ncol = len(runs)
    has_epochs = len(rj) > 0
    height = 3.8
    fig = plt.figure(figsize=((height * 1.2 + 0.7) * ncol, height * (2 if has_epochs else 1) + 0.4))
    gs = fig.add_gridspec(2 if has_epochs else 1, ncol)
    metrics = {}
    for j, name in enumerate(runs):
        ax = fig.add_subplot(gs[0, j])
        sub = df[df["run"] == name]
        plotting.scatter(sub, x, y, k=k, color=color, ax=ax)
        ax.set_title((titles or {}).get(name, name), fontsize=10)
        summ = {**ref_summary, **loaded[name].summary}
        metrics[name] = comparison_metrics(sub, summ, x, y)
    if has_epochs:
        ax = fig.add_subplot(gs[1, :])
        rj = rj.copy()
        if titles:
            rj["run"] = rj["run"].cat.rename_categories(lambda c: titles.get(c, c))
        plotting.epochs_by_run(rj, ax=ax)
    fig.tight_layout()
    return fig, metrics


# ---- sensitivity study: the measures of analysis.measures, one row per setting ---------------------

SENSITIVITY_MEASURES = (
    ("weighted_mean_log10_ratio", r"$P_{SGD}$-weighted mean of $\log_{10} P_{SGD}/P_B$"),
    ("weighted_sd_log10_ratio", "its weighted sd (decades)"),
    ("frac_within_1_decades", "share of SGD runs within 1 decade"),
    ("frac_within_0.5_decades", "share within 0.5 decade"),
    ("hellinger", "Hellinger distance (upper bound)"),
    ("p_mass_covered", r"$P_B$ mass on SGD's functions"),
    ("q_mass_p_known", "share of SGD runs with $P_B$ scored"),
    ("pearson_k=2_with_target", r"Pearson, functions seen $\geq$ 2 times"),
    ("spearman_k=2_with_target", r"Spearman, functions seen $\geq$ 2 times"),
)
SENSITIVITY_VERDICT = "frac_within_1_decades"
SUBSAMPLE_SEED = 0


def sensitivity_metrics(summary: dict, pair: str = "gp_vs_sgd", *, result=None) -> dict:
    """One row of the sensitivity table from a run's ``summary.json``: the pair's measures
    (value and interval) and the run's SGD and GP totals.  With the run's loaded ``result``
    (``results.load``) also the test errors (``sgd_test_error``: P_SGD-weighted over SGD's functions; ``pb_test_error``:
    the NNGP posterior's over all of P_B, ``claims.posterior_test_error``) and ``run_time_s``
    (manifest started to finished)."""
    m = summary.get("agreement", {}).get("measures", {}).get(pair)
    sgd, gp = summary.get("sgd", {}), summary.get("gp", {})
    out = {"measures": ({k: m["values"][k] for k, _ in SENSITIVITY_MEASURES if k in m["values"]}
                        if m else None),
           "n_bootstrap": m["n_bootstrap"] if m else None,
           "sgd_runs": sgd.get("n_runs"),
           "sgd_fitted": f"{sgd.get('n_fitted')}/{sgd.get('n_runs')}" if sgd else None,
           "sgd_n_functions": sgd.get("n_functions"),
           "epochs_to_fit_median": sgd.get("epochs_to_fit_median"),
           "gp_n_scored": gp.get("n_functions"), "gp_n_candidates": gp.get("n_candidates"),
           "gp_log10_P_S": _r(gp.get("log10_P_S")), "gp_mode": gp.get("mode")}
    if result is not None:
        from datetime import datetime

        from .claims import posterior_test_error

        out["sgd_test_error"] = _r(mean_test_error(result.functions, "sgd"), 4)
        out["pb_test_error"] = _r(posterior_test_error(result.path), 4)
        t0, t1 = result.manifest.get("started"), result.manifest.get("finished")
        out["run_time_s"] = (round((datetime.fromisoformat(t1) - datetime.fromisoformat(t0))
                                   .total_seconds()) if t0 and t1 else None)
    return out


def _verdict(row: dict, base: dict) -> str:
    """'nearer' / 'further' when the run's and the base's intervals of the share of SGD runs
    within 1 decade of the diagonal do not overlap, else 'no clear change'."""
    try:
        lo, hi = row["measures"][SENSITIVITY_VERDICT]["ci"]
        blo, bhi = base["measures"][SENSITIVITY_VERDICT]["ci"]
    except (KeyError, TypeError):
        return "n/a"
    if lo > bhi:
        return "nearer"
    if hi < blo:
        return "further"
    return "no clear change"


def subsample_runs(df: pd.DataFrame, n: int, *, sampler: str = "sgd",
                   seed: int = SUBSAMPLE_SEED) -> pd.DataFrame:
    """``df`` with ``sampler``'s counts replaced by those of ``n`` of its samples drawn without
    replacement (a multivariate hypergeometric draw of its counts: the same as choosing n of its
    runs at random), p = count / n; the other samplers' rows as they are."""
    import numpy as np

    rows = df[df["sampler"] == sampler]
    counts = rows["count"].astype(np.int64).to_numpy()
    if not 1 <= n <= counts.sum():
        raise ValueError(f"n: expected an integer in [1, {counts.sum()}] (the {sampler} samples), "
                         f"got {n}")
    c = np.random.default_rng(seed).multivariate_hypergeometric(counts, int(n))
    keep = c > 0
    sub = rows[keep].copy()
    sub["count"] = c[keep]
    sub["p"] = c[keep] / n
    sub["log10_p"] = np.log10(sub["p"])
    for col in ("count_half0", "count_half1"):  # the split halves are not redrawn
        if col in sub:
            sub[col] = np.nan
    return pd.concat([df[df["sampler"] != sampler], sub], ignore_index=True)


def draw_sensitivity(folders: dict[str, Path], *, titles: dict | None = None,
                     reference: str = "base", pair: str = "gp_vs_sgd", details: bool = False):
    """One panel per measure, one row per run (value and bootstrap interval), the reference
    run's value as a dashed line.  Metrics: ``sensitivity_metrics`` of each run and, for every
    run but the reference, ``verdict`` (``_verdict``) against the reference.

    A run with fewer SGD runs than the reference is compared with the reference at its run
    count: a row ``"<reference>@<n>"`` holds the reference's measures on ``n`` of its runs
    (``subsample_runs``), placed before it, and the run's verdict is against that row (the
    sampling floor 1/n moves every measure, so a smaller sample must not be read against the
    full one).  ``details``: also the test errors and run times (``sensitivity_metrics``)."""
    titles = dict(titles or {})
    loaded = {name: results.load(f) for name, f in folders.items()}
    metrics = {name: sensitivity_metrics(r.summary, pair, result=r if details else None)
               for name, r in loaded.items()}
    base = metrics.get(reference)
    if base is not None:
        p, q = pair.split("_vs_")
        ref = loaded[reference]
        ordered = {}
        for name, row in metrics.items():
            n = row.get("sgd_runs")
            key = f"{reference}@{n}"
            if (name != reference and n and base.get("sgd_runs") and n < base["sgd_runs"]
                    and key not in ordered):
                target = ref.summary.get("task", {}).get("target_on_E")
                pair_ks = ref.summary.get("agreement", {}).get("pairs", {}).get(pair, {})
                ks = sorted(int(k.split("=")[1]) for k in pair_ks) or [2]
                m = measures(subsample_runs(ref.functions, n, sampler=q), q, p, min_counts=ks,
                             target=target)
                ordered[key] = {"measures": {k: m["values"][k] for k, _ in SENSITIVITY_MEASURES
                                             if k in m["values"]} if m else None,
                                "sgd_runs": n, "subsample_of": reference,
                                "sgd_fitted": f"{n} of {base.get('sgd_fitted')}",
                                "sgd_n_functions": m["n_functions_q"] if m else None,
                                "title": f"{titles.get(reference, reference)}, {n:,} of its runs"}
                titles[key] = ordered[key]["title"]
            ordered[name] = row
        metrics = ordered
        for name, row in metrics.items():
            if name != reference and "subsample_of" not in row:
                n = row.get("sgd_runs")
                against = metrics.get(f"{reference}@{n}", base)
                row["verdict"] = _verdict(row, against)
                if against is not base:
                    row["verdict_against"] = f"{reference}@{n}"
    names = list(metrics)
    ncol = 3
    nrow = math.ceil(len(SENSITIVITY_MEASURES) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 0.32 * len(names) * nrow + 1.4 * nrow),
                             squeeze=False, sharey=True)
    ys = list(range(len(names)))[::-1]
    for ax, (key, label) in zip(axes.flat, SENSITIVITY_MEASURES):
        for y, name in zip(ys, names):
            v = (metrics[name]["measures"] or {}).get(key)
            if not v or v.get("value") is None:
                continue
            ci = v.get("ci") or [v["value"], v["value"]]
            color = {"nearer": "tab:green", "further": "tab:red"}.get(metrics[name].get("verdict"), "k")
            if "subsample_of" in metrics[name]:
                color = "0.55"
            # a basic bootstrap interval is centred near the bias-corrected value: it need not
            # contain the plug-in estimate (``analysis.measures``)
            ax.hlines(y, ci[0], ci[1], color=color, lw=1.5)
            ax.plot(v["value"], y, "o", color=color, ms=4)
        if key == "p_mass_covered" and ax.has_data() and ax.get_xlim()[0] > 0:
            ax.set_xscale("log")  # P_B mass on SGD's functions spans decades between settings
        bv = ((base or {}).get("measures") or {}).get(key)
        if bv and bv.get("value") is not None:
            ax.axvline(bv["value"], color="0.5", ls="--", lw=1)
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes.flat[len(SENSITIVITY_MEASURES):]:
        ax.set_axis_off()
    for r in range(nrow):
        axes[r, 0].set_yticks(ys)
        axes[r, 0].set_yticklabels([titles.get(n, n) for n in names], fontsize=8)
    fig.text(0.01, 0.005, f"green: nearer P_B than {reference}, red: further (intervals of the "
             "share within 1 decade do not overlap); grey: the base on fewer runs (the "
             "reference of the row below it); dashed: the base", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig, metrics


def _fmt(v: dict | None, pct: bool = False) -> str:
    if not v or v.get("value") is None:
        return "n/a"
    if pct:
        def f(x):
            return f"{100 * x:.0f} %"
    elif pct is None:  # signed
        def f(x):
            return f"{x:+.2f}"
    else:
        def f(x):
            return f"{x:.2f}"
    ci = v.get("ci")
    return f"{f(v['value'])} [{f(ci[0])}, {f(ci[1])}]" if ci else f(v["value"])


def sensitivity_markdown(metrics: dict, *, titles: dict | None = None) -> str:
    """The sensitivity table as markdown: one row per run, value [95 % interval]; the test
    errors and run time where ``metrics`` has them (``draw_sensitivity(details=True)``)."""
    titles = titles or {}
    details = any("pb_test_error" in row for row in metrics.values())
    head = ("| setting | mean log10 P_SGD/P_B | sd | within 1 decade | within 0.5 | Hellinger "
            "| P_B mass covered | runs with P_B scored | Pearson (k ≥ 2) | Spearman (k ≥ 2) "
            "| fitted | functions (scored) |"
            + (" test error P_SGD / P_B | run time |" if details else "") + " verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    titles = {**titles, **{n: r["title"] for n, r in metrics.items() if r.get("title")}}
    for name, row in metrics.items():
        m = row.get("measures") or {}
        extra = ""
        if details:
            t = row.get("run_time_s")
            extra = (f" {_num(row.get('sgd_test_error'))} / {_num(row.get('pb_test_error'))} "
                     f"| {f'{t // 60} min {t % 60:02d} s' if t is not None else '-'} |")
        scored = f" ({row['gp_n_scored']})" if row.get("gp_n_scored") is not None else ""
        verdict = row.get("verdict", "reference" if "subsample_of" not in row else
                          f"reference of the {row['sgd_runs']:,}-run rows")
        if row.get("verdict_against"):
            verdict += f" (vs {titles.get(row['verdict_against'], row['verdict_against'])})"
        lines.append(
            f"| {titles.get(name, name)} | {_fmt(m.get('weighted_mean_log10_ratio'), None)} "
            f"| {_fmt(m.get('weighted_sd_log10_ratio'))} "
            f"| {_fmt(m.get('frac_within_1_decades'), True)} "
            f"| {_fmt(m.get('frac_within_0.5_decades'), True)} | {_fmt(m.get('hellinger'))} "
            f"| {_fmt(m.get('p_mass_covered'), True)} | {_fmt(m.get('q_mass_p_known'), True)} "
            f"| {_fmt(m.get('pearson_k=2_with_target'))} | {_fmt(m.get('spearman_k=2_with_target'))} "
            f"| {row.get('sgd_fitted')} | {row.get('sgd_n_functions')}{scored} |{extra} "
            f"{verdict} |")
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
