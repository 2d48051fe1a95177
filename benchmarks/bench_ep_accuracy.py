"""EP's (and minimax tilting's) error in ln P against the exact orthant probability, d = 2..12.

    .venv/bin/python benchmarks/bench_ep_accuracy.py [--dims 2 12] [--cases 24] [--json OUT]

Kernels: the analytic NNGP of the default model (FCN 7-40-40-1 ReLU, sigma_w = 1, sigma_b = 1,
``fcn_nngp_kernel`` depth 2) on d distinct inputs drawn at random from the 128 inputs of the
n = 7 Boolean cube (kernel correlations 0.6-0.99).  Sign patterns, a third of each d's cases each:

* ``typical``: the signs of one draw g ~ N(0, K) (what the GP itself puts mass on);
* ``random``: uniform random signs;
* ``parity``: the parity of the chosen inputs' bits, the hardest pattern for this prior
  (the smallest probabilities here).

Reference: ``method="exact"``: closed forms for d <= 3, otherwise scipy's Genz QMC (target
relative error 1e-4) checked by minimax tilting and replaced by a 200,000-sample tilting run
where it missed (reported as ``exact_fallbacks``).  Compared: EP (``method="ep"``, defaults)
and minimax tilting with the GP sampler's default 10,000 samples.  Errors are
``ln P_method - ln P_exact`` (natural log; divide by 2.303 for decades), reported per d and by
size of P as mean / max |error| and mean signed error (bias).  Seeded (``--seed``, default 0).

Measured (defaults: d = 2..12, 30 cases each, seed 0; 80 s on one shared core), error in ln P:

===============  ====  ==========  ==========  =========  ==============  ==============
cases            n     min log10P  EP mean|e|  EP max|e|  EP mean signed  tilting max|e|
===============  ====  ==========  ==========  =========  ==============  ==============
p > 1e-2         145   -2.0        0.112       0.221      -0.111          0.0078
1e-5 < p <= 1e-2 152   -5.0        0.013       0.047      -0.012          0.0185
p <= 1e-5        33    -8.1        0.0096      0.025      -0.0085         0.0116
all              330   -8.1        0.056       0.221      -0.055          0.0185
===============  ====  ==========  ==========  =========  ==============  ==============

EP always errs low, and most on the probable patterns (``typical``: mean 0.139, max 0.221 in
ln P, i.e. up to 0.096 decades, growing with d from 0.07 at d = 2); on tiny probabilities it
is within 0.025 (0.011 decades).  Minimax tilting with 10,000 samples: mean |error| 0.0032,
max 0.0185, no bias.  'exact' fell back to tilting in 2 of the 297 QMC cases (d > 3).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs=2, default=(2, 12), metavar=("LO", "HI"))
    ap.add_argument("--cases", type=int, default=30, help="cases per dimension (a third of each kind)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if args.cases < 3:
        ap.error("--cases: expected at least 3")

    from bayes_sgd.gp import fcn_nngp_kernel, log_orthant_probability
    from bayes_sgd.tasks import boolean_inputs

    X = boolean_inputs(7)
    K_all = fcn_nngp_kernel(X, depth=2, sigma_w=1.0, sigma_b=1.0, activation="relu")
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for d in range(args.dims[0], args.dims[1] + 1):
        for c in range(args.cases):
            idx = rng.choice(len(X), size=d, replace=False)
            K = K_all[np.ix_(idx, idx)]
            kind = ("typical", "random", "parity")[c % 3]
            if kind == "typical":
                g = np.linalg.cholesky(K + 1e-12 * np.eye(d)) @ rng.standard_normal(d)
                s = np.where(g > 0, 1.0, -1.0)
            elif kind == "random":
                s = rng.choice([-1.0, 1.0], size=d)
            else:
                s = np.where(X[idx].sum(1) % 2 == 1, 1.0, -1.0)
            ex = log_orthant_probability(K, s, "exact", rng=rng)
            t = time.perf_counter()
            ep = log_orthant_probability(K, s, "ep")
            t_ep = time.perf_counter() - t
            t = time.perf_counter()
            mt = log_orthant_probability(K, s, "minimax-tilting", n_samples=10_000, rng=rng)
            t_mt = time.perf_counter() - t
            sd = np.sqrt(np.diag(K))
            R = K / np.outer(sd, sd)
            rows.append(dict(d=d, kind=kind, log10_p=ex.log_p / math.log(10),
                             exact_how=ex.info.get("how"), ep_err=ep.log_p - ex.log_p,
                             mt_err=mt.log_p - ex.log_p, mt_rel_stderr=mt.rel_stderr,
                             ep_converged=bool(ep.converged), t_ep=t_ep, t_mt=t_mt,
                             max_corr=float(np.max(R[np.triu_indices(d, 1)]))))
    wall = time.perf_counter() - t0

    def stats_of(sub):
        e, m = np.array([r["ep_err"] for r in sub]), np.array([r["mt_err"] for r in sub])
        return {"n": len(sub),
                "log10_p_min": float(min(r["log10_p"] for r in sub)),
                "ep_mean_abs": float(np.mean(np.abs(e))), "ep_max_abs": float(np.max(np.abs(e))),
                "ep_mean_signed": float(np.mean(e)),
                "tilting_mean_abs": float(np.mean(np.abs(m))),
                "tilting_max_abs": float(np.max(np.abs(m))),
                "tilting_mean_signed": float(np.mean(m))}

    out = {"setting": "NNGP FCN 7-40-40-1 relu sigma_w=1 sigma_b=1 on random Boolean inputs",
           "cases_per_dim": args.cases, "seed": args.seed, "wall_s": wall,
           "exact_fallbacks": sum(r["exact_how"] != "scipy qmc" and r["d"] > 3 for r in rows),
           "ep_not_converged": sum(not r["ep_converged"] for r in rows),
           "ep_time_mean_s": float(np.mean([r["t_ep"] for r in rows])),
           "tilting_time_mean_s": float(np.mean([r["t_mt"] for r in rows])),
           "by_dim": {}, "by_p": {}, "all": stats_of(rows)}
    for d in sorted({r["d"] for r in rows}):
        out["by_dim"][str(d)] = stats_of([r for r in rows if r["d"] == d])
    for name, lo, hi in (("p>1e-2", -2, 1), ("1e-5<p<=1e-2", -5, -2), ("p<=1e-5", -np.inf, -5)):
        sub = [r for r in rows if lo < r["log10_p"] <= hi]
        if sub:
            out["by_p"][name] = stats_of(sub)
    out["by_kind"] = {k: stats_of([r for r in rows if r["kind"] == k])
                      for k in ("typical", "random", "parity")}

    print(f"EP and minimax tilting (10k samples) vs exact, error in ln P; {args.cases} cases per "
          f"dimension, seed {args.seed}, {wall:.0f} s")
    hdr = f"{'':>14} {'n':>4} {'min log10 P':>11} {'EP mean|e|':>10} {'EP max|e|':>9} " \
          f"{'EP bias':>8} {'MT mean|e|':>10} {'MT max|e|':>9} {'MT bias':>8}"
    print(hdr)
    for label, st in [*((f"d = {k}", v) for k, v in out["by_dim"].items()),
                      *out["by_p"].items(), *out["by_kind"].items(), ("all", out["all"])]:
        print(f"{label:>14} {st['n']:>4} {st['log10_p_min']:>11.2f} {st['ep_mean_abs']:>10.4f} "
              f"{st['ep_max_abs']:>9.4f} {st['ep_mean_signed']:>8.4f} {st['tilting_mean_abs']:>10.4f} "
              f"{st['tilting_max_abs']:>9.4f} {st['tilting_mean_signed']:>8.4f}")
    print(f"exact fell back to tilting in {out['exact_fallbacks']} cases; EP not converged in "
          f"{out['ep_not_converged']}; mean time EP {out['ep_time_mean_s'] * 1e3:.1f} ms, "
          f"tilting {out['tilting_time_mean_s'] * 1e3:.1f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
