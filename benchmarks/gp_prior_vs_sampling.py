"""GP (EP) prior probabilities P(f) on the whole truth table vs random-initialisation sampling.

For a Boolean run with ``samplers.rejection.record_prior = true`` the runner counts P(f) over
all 2^n inputs ("prior" rows of functions.parquet, bit strings in truth-table order).  This
script scores every function seen at least ``--min-count`` times by the orthant probability of
its full sign pattern under the model's analytic NNGP kernel,

    log10 P_GP(f) = log10 P(sign g(X) = f),   g ~ N(0, K_NNGP(X, X)),  X = all 2^n inputs,

and reports Pearson / Spearman of log10 P_GP against log10 (count / samples).  The scoring is
``bayes_sgd.samplers.prior_vs_sampling``, the function the runner itself calls when
``samplers.gp.enabled`` and ``samplers.rejection.record_prior`` are both on (its figures then
land in ``summary.json`` under ``gp.prior_vs_sampling``); this script re-scores an existing
folder with other settings (``--min-count``, ``--method``, ``--max-functions``).

    .venv/bin/bayes-sgd run --set samplers.rejection.record_prior=true \\
        --set samplers.rejection.n_samples=2000000 --set samplers.sgd.enabled=false \\
        --out /tmp/prior_run --quiet
    .venv/bin/python benchmarks/gp_prior_vs_sampling.py /tmp/prior_run

(``--run`` does the first step itself when the folder has no results.)

Measured (2 shared cores, seed 0, 2*10^6 samples, 451,813 distinct functions sampled):
functions seen >= 10 times: n = 1269, Pearson 0.960, Spearman 0.737 (without the two constant
functions: 0.953 / 0.736); >= 100 times: n = 258, Pearson 0.994, Spearman 0.562.  The prior's
own split-half ceiling (>= 5 in each half) is Pearson 0.915 / Spearman 0.569 (n = 1185), so the
agreement is at the sampling-noise limit.  EP sits 0.16-0.21 decades below the sampled
frequency on average; minimax tilting (``--method minimax-tilting``, top 60 functions) removes
that: mean offset -0.013, sd 0.026 decades.  EP took 71 ms per 128-dim orthant.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd


def _sample(folder: Path, n_samples: int) -> None:
    exe = Path(sys.executable).with_name("bayes-sgd")
    cmd = [str(exe), "run", "--set", "samplers.rejection.record_prior=true", "--set",
           f"samplers.rejection.n_samples={n_samples}", "--set", "samplers.sgd.enabled=false",
           "--out", str(folder), "--quiet"]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="results folder of a record_prior=true run")
    ap.add_argument("--min-count", type=int, default=10)
    ap.add_argument("--method", default="ep", choices=("ep", "minimax-tilting"))
    ap.add_argument("--tilting-samples", type=int, default=10_000)
    ap.add_argument("--max-functions", type=int, default=0, help="score at most this many (0 = all)")
    ap.add_argument("--run", action="store_true", help="sample first if the folder has no results")
    ap.add_argument("--n-samples", type=int, default=2_000_000)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--csv", type=Path, help="write per-function log10 P (sampled, GP) here")
    args = ap.parse_args(argv)

    from bayes_sgd.config import config_from_dict
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import gp_kernel, prior_vs_sampling
    from bayes_sgd.tasks import boolean_inputs

    table = args.results / "functions.parquet"
    if not table.exists():
        if not args.run:
            ap.error(f"{table} does not exist (pass --run to sample it)")
        _sample(args.results, args.n_samples)
    manifest = json.loads((args.results / "manifest.json").read_text())
    cfg = config_from_dict(manifest["config"])
    if cfg.task.kind != "boolean" or not cfg.samplers.rejection.record_prior:
        ap.error("expected a Boolean run with samplers.rejection.record_prior = true")
    df = pd.read_parquet(table)
    prior = df[df["sampler"] == "prior"]
    X = boolean_inputs(cfg.task.n)
    model = build_model(cfg.model, X.shape[1:])
    K, kernel_used, _ = gp_kernel(cfg, model, X)
    scored, summ = prior_vs_sampling(K, prior, min_count=args.min_count, method=args.method,
                                     tilting_samples=args.tilting_samples, seed=0,
                                     max_functions=args.max_functions)
    out = {"results": str(args.results), "kernel": f"{kernel_used} NNGP, FCN {cfg.task.n}-"
           + "-".join(map(str, cfg.model.widths)) + f"-1 {cfg.model.activation} "
           f"sigma_w={cfg.model.sigma_w} sigma_b={cfg.model.sigma_b}", **summ}
    print(json.dumps(out, indent=2))
    if args.csv:
        scored[["function", "count", "ones", "lz", "log10_p_sampled", "log10_p_gp"]].to_csv(
            args.csv, index=False)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
