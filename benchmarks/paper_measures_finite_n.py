"""The paper-scale folders' agreement measures with their finite-N checks (issue 11, item 5).

Recomputes ``bayes_sgd.analysis.measures`` (q = SGD, p = GP P_B by default) from each results
folder's ``functions.parquet``, with the folder's own ``analysis.min_counts`` and target, as
``run_experiment`` does, and prints per folder and measure: the value and its 95 % interval,
the bootstrap bias, the bias-corrected value and ``value_half_runs`` (the measure from half of
SGD's runs).  ``value - value_half_runs`` is how far the measure moved when the runs doubled:
a verdict such as "SGD 1.4 decades above P_B" survives the N-dependence when the gap is much
larger than that shift.

It first checks that ``value`` and ``ci`` equal what the folder's ``summary.json`` holds (the
numbers the report quotes) and prints any difference.

    PYTHONPATH=. python benchmarks/paper_measures_finite_n.py /work/runs/paper/targets_n7/t4 \
        /work/runs/paper/t6_gp --out table.csv
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bayes_sgd import results
from bayes_sgd.analysis import measures

SHOWN = ("weighted_mean_log10_ratio", "frac_within_1_decades", "frac_within_0.5_decades",
         "p_mass_covered", "hellinger", "weighted_sd_log10_ratio")
# a recomputed value or interval end differing from summary.json by more than this is listed
# (the bootstrap is seeded, so an unchanged package reproduces them to rounding)
TOLERANCE = 1e-9


def folder_table(folder: str, q: str, p: str, n_boot: int) -> pd.DataFrame:
    r = results.load(folder)
    min_counts = r.config.get("analysis", {}).get("min_counts", [2, 5, 10])
    target = r.summary.get("task", {}).get("target_on_E")
    m = measures(r.functions, q, p, min_counts=min_counts, target=target, n_boot=n_boot)
    if m is None:
        raise SystemExit(f"{folder}: no rows of sampler {q!r} or {p!r} in functions.parquet")
    stored = r.summary.get("agreement", {}).get("measures", {}).get(f"{p}_vs_{q}", {})
    stored = stored.get("values", {})
    rows = []
    for name in SHOWN:
        v = m["values"][name]
        s = stored.get(name, {})
        ci, s_ci = v["ci"] or [np.nan, np.nan], s.get("ci") or [np.nan, np.nan]
        rows.append({
            "folder": folder, "measure": name, "n_runs": m["n_samples_q"],
            "n_functions": m["n_functions_q"], "value": v["value"], "ci_lo": ci[0], "ci_hi": ci[1],
            "bias": v["bias"], "value_bias_corrected": v["value_bias_corrected"],
            "value_half_runs": v["value_half_runs"],
            "stored_value": s.get("value", np.nan), "stored_ci_lo": s_ci[0],
            "stored_ci_hi": s_ci[1]})
    t = pd.DataFrame(rows)
    t["shift_doubling"] = t["value"] - t["value_half_runs"]
    t["max_diff_stored"] = np.nanmax(np.abs(np.stack([
        t["value"] - t["stored_value"], t["ci_lo"] - t["stored_ci_lo"],
        t["ci_hi"] - t["stored_ci_hi"]])), axis=0)
    t.loc[t["stored_value"].isna(), "max_diff_stored"] = np.nan
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--pair", default="sgd:gp", help="q:p, e.g. sgd:gp or sgd:rejection")
    ap.add_argument("--n-boot", type=int, default=1000,
                    help="replicates (summary.json's: 1000; another count changes the interval)")
    ap.add_argument("--out", default=None, help="CSV of every row")
    ap.add_argument("--markdown", action="store_true",
                    help="also print one markdown row per folder (docs/reproduction.md's "
                         "finite-N tables)")
    a = ap.parse_args()
    q, p = a.pair.split(":")
    tabs = []
    for folder in a.folders:
        t0 = time.perf_counter()
        tabs.append(folder_table(folder, q, p, a.n_boot))
        print(f"# {folder} {a.pair}: {tabs[-1]['n_runs'].iloc[0]} runs, "
              f"{tabs[-1]['n_functions'].iloc[0]} functions, {time.perf_counter() - t0:.0f} s")
    t = pd.concat(tabs, ignore_index=True)
    if a.out:
        t.to_csv(a.out, index=False)
    diff = t[~(t["max_diff_stored"] <= TOLERANCE)]
    print(f"\n# value and ci against summary.json: {len(t) - len(diff)} of {len(t)} rows agree "
          f"within {TOLERANCE:g}")
    cols = ["folder", "measure", "value", "stored_value", "ci_lo", "stored_ci_lo", "ci_hi",
            "stored_ci_hi", "max_diff_stored"]
    with pd.option_context("display.width", 250, "display.max_rows", 500,
                           "display.max_colwidth", 60, "display.float_format", "{:.5f}".format):
        if len(diff):
            print(diff[cols].to_string(index=False))
        print()
        print(t[["folder", "measure", "value", "ci_lo", "ci_hi", "bias", "value_bias_corrected",
                 "value_half_runs", "shift_doubling"]].to_string(index=False))
        if a.markdown:
            print()
            print(markdown(t))


MARKDOWN = (("weighted_mean_log10_ratio", "{:+.3f}", 1), ("frac_within_1_decades", "{:.1f}", 100),
            ("p_mass_covered", "{:.1f}", 100), ("hellinger", "{:.3f}", 1))


def markdown(t: pd.DataFrame) -> str:
    """Per folder: each measure as value / bias-corrected / at half the runs, and for the
    weighted mean also the 95 % interval and the shift when the runs doubled."""
    lines = []
    for folder, g in t.groupby("folder", sort=False):
        g = g.set_index("measure")
        cells = [f"`{folder}`"]
        for name, fmt, scale in MARKDOWN:
            r = g.loc[name]
            vals = [fmt.format(scale * r[c]) for c in ("value", "value_bias_corrected",
                                                          "value_half_runs")]
            cell = " / ".join(vals)
            if name == "weighted_mean_log10_ratio":
                cell += (f" [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]; "
                         f"{r['shift_doubling']:+.3f}")
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
