"""Pool the SGD runs of results folders that differ only in their seed (issue 11, finite N).

A function seen once has P_SGD = 1 / n_runs, so the agreement measures of a run whose
functions are mostly seen once move with the run count (``value_half_runs`` in
``summary.json``).  Runs with another ``seed`` are independent draws of the same P_SGD (the
run keys derive from the seed), so two folders of 10^5 runs pool into 2·10^5.  This script
checks that the folders' resolved configs agree except for ``seed`` and the samplers' switches,
sums the SGD counts per function, takes the GP's P_B per function from the folders (EP is
deterministic, so a function scored in two folders must get the same log10 P_B: it checks
that), and prints ``bayes_sgd.analysis.measures`` of the pooled table beside each folder's
own, with the bootstrap intervals and ``value_half_runs``.

    PYTHONPATH=. python benchmarks/pool_sgd_folders.py RUN_SEED0 RUN_SEED1 [--out pooled.parquet]
"""
from __future__ import annotations

import argparse
import copy

import numpy as np
import pandas as pd

from bayes_sgd import results
from bayes_sgd.analysis import measures

SHOWN = ("weighted_mean_log10_ratio", "weighted_sd_log10_ratio", "frac_within_1_decades",
         "frac_within_0.5_decades", "p_mass_covered", "hellinger")
# fields that may differ between the pooled folders: the seed, and which samplers ran
# (the GP scores the functions each folder found; rejection is optional)
FREE = ("seed",)


def _comparable(cfg: dict) -> dict:
    c = copy.deepcopy(cfg)
    for k in FREE:
        c.pop(k, None)
    c.pop("name", None)
    samplers = c.get("samplers", {})
    samplers.pop("rejection", None)
    samplers.get("gp", {}).pop("enabled", None)
    return c


def pooled_table(folders: list[str]) -> tuple[pd.DataFrame, list]:
    rs = [results.load(f) for f in folders]
    base = _comparable(rs[0].config)
    for r in rs[1:]:
        if _comparable(r.config) != base:
            raise SystemExit(f"{r.path}: its config differs from {rs[0].path} beyond {FREE}")
    seeds = [r.config.get("seed") for r in rs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"the folders share a seed ({seeds}): their runs are not independent")
    sgd = pd.concat([r.functions[r.functions["sampler"] == "sgd"] for r in rs])
    gp = pd.concat([r.functions[r.functions["sampler"] == "gp"] for r in rs])
    spread = gp.groupby("function")["log10_p"].agg(lambda s: np.ptp(s.to_numpy()))
    if len(spread) and spread.max() > 1e-9:
        raise SystemExit(f"GP log10 P_B of one function differs between folders by "
                         f"{spread.max():.3g} (EP is deterministic: expected equal)")
    gp = gp.drop_duplicates("function")
    sums = sgd.groupby("function", sort=False)[["count", "count_half0", "count_half1"]].sum()
    first = sgd.drop_duplicates("function").set_index("function")
    pooled = first.drop(columns=["count", "count_half0", "count_half1"]).join(sums)
    total = pooled["count"].sum()
    pooled["p"] = pooled["count"] / total
    pooled["log10_p"] = np.log10(pooled["p"])
    pooled = pooled.reset_index()[sgd.columns]
    return pd.concat([pooled, gp], ignore_index=True), rs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=None, help="write the pooled function table (Parquet)")
    a = ap.parse_args()
    table, rs = pooled_table(a.folders)
    if a.out:
        table.to_parquet(a.out, index=False)
    min_counts = rs[0].config.get("analysis", {}).get("min_counts", [2, 5, 10])
    target = rs[0].summary.get("task", {}).get("target_on_E")
    rows = []
    for label, df in [*((str(r.path), r.functions) for r in rs), ("pooled", table)]:
        m = measures(df, "sgd", "gp", min_counts=min_counts, target=target, n_boot=a.n_boot)
        for name in SHOWN:
            v = m["values"][name]
            ci = v["ci"] or [np.nan, np.nan]
            rows.append({"folder": label, "n_runs": m["n_samples_q"],
                         "n_functions": m["n_functions_q"], "measure": name,
                         "value": v["value"], "ci_lo": ci[0], "ci_hi": ci[1],
                         "value_bias_corrected": v["value_bias_corrected"],
                         "value_half_runs": v["value_half_runs"]})
    t = pd.DataFrame(rows)
    t["shift_doubling"] = t["value"] - t["value_half_runs"]
    seen = table[table["sampler"] == "sgd"]["count"]
    print(f"# pooled: {int(seen.sum())} runs, {len(seen)} functions "
          f"({(seen == 1).sum()} seen once, {int(seen[seen == 1].sum())} runs on them)")
    with pd.option_context("display.width", 250, "display.max_rows", 500,
                           "display.max_colwidth", 50, "display.float_format", "{:.4f}".format):
        print(t.to_string(index=False))


if __name__ == "__main__":
    main()
