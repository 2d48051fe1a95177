"""How concentrated is the GP posterior over functions on E, as |S| grows and |E| shrinks?

For a binarised image task (the package's task builder, seed 0) and the FCN's analytic NNGP
kernel: EP on S once, the EP predictive N(mean, cov) on the first |E| points of E (E nested:
10 of the 20, 20 of the 50, ...), then ``gp.top_functions`` (sampling the predictive, the top
100 patterns scored with EP orthant probabilities) and ``gp.greedy_mode`` (bit-flip
hill-climbing from sign(mean), which reaches probabilities below the sampling resolution).

    python benchmarks/gp_top_table.py --dataset mnist --sizes 500 1000 2000 5000 --out t.csv

Prints one row per (|S|, |E|): P_B of the most probable function (sampled frequency, its EP
score and the hill-climbing mode's EP score), the sampled mass of the top 100, the number of
distinct functions among the draws, the test error of the top function, EP time and memory.
"""
from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bayes_sgd.gp import ep_posterior, ep_predictive, fcn_nngp_kernel, greedy_mode, top_functions
from bayes_sgd.tasks import make_image_task

SPLITS = {  # S and E: MNIST ships only its test split here; Fashion-MNIST has both
    "mnist": dict(split="test"),
    "fashion-mnist": dict(split="train", test_split="test"),
}


def table(dataset, sizes, tests, *, sigma_w, sigma_b, depth, n_samples, k, seed=0, path=None):
    rows = []
    n_E = max(tests)
    for m in sizes:
        task = make_image_task(dataset, path=path, train_size=m, test_size=n_E, seed=seed,
                               binarize="threshold:5", scale="unit", flatten=True,
                               **SPLITS[dataset])
        X = np.concatenate([task.x_train, task.x_test]).astype(np.float64)
        t0 = time.perf_counter()
        K = fcn_nngp_kernel(X, depth=depth, sigma_w=sigma_w, sigma_b=sigma_b)
        t_k = time.perf_counter() - t0
        y = 2.0 * np.asarray(task.y_train, np.float64) - 1.0
        t0 = time.perf_counter()
        st = ep_posterior(K[:m, :m], y)
        t_ep = time.perf_counter() - t0
        mean, cov = ep_predictive(K[:m, :m], K[:m, m:], K[m:, m:], st)
        del K
        y_E = np.asarray(task.y_test, np.uint8)
        for e in tests:
            mu, C = mean[:e], cov[:e, :e]
            t0 = time.perf_counter()
            top = top_functions(mu, C, rng=np.random.default_rng([seed, m, e]),
                                n_samples=n_samples, k=k, method="ep")
            g_bits, g_lp, g_eval = greedy_mode(mu, C, method="ep", candidates=20)
            dt = time.perf_counter() - t0
            rows.append(dict(
                dataset=dataset, S=m, E=e, ep_s=round(t_ep, 1), kernel_s=round(t_k, 1),
                log_P_S=round(float(st.log_Z), 1),
                top1_p_sampled=float(top.p_mc[0]), top1_count=int(top.count[0]),
                top1_p_ep=float(np.exp(top.log_p[0])),
                top1_errors=int((top.bits[0] != y_E[:e]).sum()),
                mode_p_ep=float(np.exp(g_lp)), mode_errors=int((g_bits != y_E[:e]).sum()),
                mode_is_top1=bool(np.array_equal(g_bits, top.bits[0])),
                top100_mass_sampled=top.mass_mc, n_distinct=top.n_distinct,
                n_seen_ge_10=int((top.count >= 10).sum()),
                sign_mean_errors=int(((mu > 0) != y_E[:e]).sum()),
                search_s=round(dt, 1),
                rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)))
            print(" ".join(f"{k_}={v:.3g}" if isinstance(v, float) else f"{k_}={v}"
                           for k_, v in rows[-1].items()), flush=True)
    return rows


def append_csv(path, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV table at ``path`` (its header written when the file is new)."""
    new = not Path(path).exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def markdown(csv_path) -> str:
    """The README table from a CSV written by --out."""
    import pandas as pd

    df = pd.read_csv(csv_path).drop_duplicates(["dataset", "S", "E"], keep="last")
    lines = ["| dataset | \\|S\\| | \\|E\\| | P_B of the most probable function (sampled) | its errors on E "
             "| P_B mass of the top 100 (sampled) | distinct functions in 10^6 draws | EP on S |",
             "|---|---|---|---|---|---|---|---|"]
    for r in df.sort_values(["dataset", "S", "E"]).itertuples():
        resolved = r.top1_count >= 100 and r.mode_is_top1
        p = f"{r.mode_p_ep:.2g}" + (f" ({r.top1_p_sampled:.2g})" if resolved else " (not resolved)")
        # the 100th function drawn < 10 times: the mass is at the sampling floor (~100/10^6)
        floor = r.n_seen_ge_10 < min(100, r.n_distinct) and r.top100_mass_sampled < 0.05
        mass = f"{r.top100_mass_sampled:.2g}" + ("*" if floor else "")
        lines.append(f"| {r.dataset} | {r.S:,} | {r.E} | {p} | {r.mode_errors} "
                     f"| {mass} | {r.n_distinct:,} | {r.ep_s:.0f} s |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(SPLITS), default="mnist")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    ap.add_argument("--tests", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--sigma-w", type=float, default=1.0)
    ap.add_argument("--sigma-b", type=float, default=0.0357)
    ap.add_argument("--depth", type=int, default=2, help="hidden layers")
    ap.add_argument("--n-samples", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--out", default=None, help="CSV file (appended)")
    ap.add_argument("--markdown", default=None, help="print the README table of this CSV and exit")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown(a.markdown))
        return 0
    rows = table(a.dataset, a.sizes, a.tests, sigma_w=a.sigma_w, sigma_b=a.sigma_b,
                 depth=a.depth, n_samples=a.n_samples, k=a.k, path=a.data_path)
    if a.out:
        append_csv(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
