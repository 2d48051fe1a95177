"""How the agreement measures move with the number of runs (issue 11, item 3).

The measures of ``bayes_sgd.analysis.measures`` are plug-in functionals of P_q estimated from
counts, so their expectation depends on the run count N.  This draws N of a results folder's
q samples without replacement (``figures.subsample_runs``: the same as having run only N of
them), several seeds per N, and prints for every measure the mean and sd over seeds of the
plug-in value, of the bootstrap bias estimate and of the bias-corrected value, and the share of
seeds whose 95 % interval holds the value of the full folder.

    PYTHONPATH=. python benchmarks/measures_vs_runs.py /work/runs/paper/cde/batch_n7/batch_n7/batch1 \
        --pair sgd:gp --n 1000 10000 30000 --seeds 5 --out table.csv
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bayes_sgd import results
from bayes_sgd.analysis import measures
from bayes_sgd.figures import subsample_runs

SHOWN = ("weighted_mean_log10_ratio", "weighted_sd_log10_ratio", "frac_within_0.5_decades",
         "frac_within_1_decades", "q_mass_p_known", "p_mass_covered", "hellinger",
         "pearson_k=10_without_target", "spearman_k=10_without_target")


def study(df, q, p, ns, seeds, n_boot, target):
    n_full = int(df.loc[df["sampler"] == q, "count"].sum())
    rows = []
    for n in list(ns) + [n_full]:
        for s in range(seeds if n < n_full else 1):
            sub = df if n == n_full else subsample_runs(df, n, sampler=q, seed=1000 + s)
            m = measures(sub, q, p, min_counts=[10], target=target, n_boot=n_boot)
            for name in SHOWN:
                v = m["values"][name]
                rows.append({"pair": f"{q}:{p}", "n": n, "seed": s, "measure": name,
                             "n_functions": m["n_functions_q"], **{
                                 k: v.get(k) for k in ("value", "bias", "value_bias_corrected",
                                                       "value_half_runs")},
                             "ci_lo": v["ci"][0] if v["ci"] else np.nan,
                             "ci_hi": v["ci"][1] if v["ci"] else np.nan})
    t = pd.DataFrame(rows).astype({"value": float})
    full = t[t["n"] == n_full].set_index("measure")["value"]
    t["covers_full"] = (t["ci_lo"] <= t["measure"].map(full)) & (t["measure"].map(full) <= t["ci_hi"])
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--pair", action="append", default=None, help="q:p, e.g. sgd:gp")
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 30000])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    r = results.load(a.folder)
    target = r.summary.get("task", {}).get("target_on_E")
    tabs = []
    for pair in a.pair or ["sgd:gp"]:
        q, p = pair.split(":")
        t0 = time.perf_counter()
        tabs.append(study(r.functions, q, p, a.n, a.seeds, a.n_boot, target))
        print(f"# {a.folder} {pair}: {time.perf_counter() - t0:.0f} s")
    t = pd.concat(tabs, ignore_index=True)
    if a.out:
        t.to_csv(a.out, index=False)
    cols = [c for c in ("value", "bias", "value_bias_corrected", "value_half_runs", "n_functions")
            if t[c].notna().any()]
    agg = t.groupby(["pair", "measure", "n"], sort=False).agg(
        **{f"{c}_mean": (c, "mean") for c in cols}, value_sd=("value", "std"),
        ci_lo=("ci_lo", "mean"), ci_hi=("ci_hi", "mean"), covers_full=("covers_full", "mean"))
    with pd.option_context("display.width", 250, "display.max_rows", 500,
                           "display.float_format", "{:.4f}".format):
        print(agg)


if __name__ == "__main__":
    main()
