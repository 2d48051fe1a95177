"""Command line: ``bayes-sgd run [CONFIG] [--out DIR] [--set key=value ...]``."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayes-sgd", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (default: the n=7 Boolean experiment)")
    run.add_argument("config", nargs="?", help="TOML config (default: the embedded boolean_n7.toml)")
    run.add_argument("--out", help="results folder (default: results/<name>); rerun to resume")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field, e.g. --set samplers.sgd.lr=0.01")
    run.add_argument("--scheduler", help="Dask scheduler address (tcp://host:port) for chunks")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--restart", action="store_true",
                     help="discard the folder's checkpoints and start the samplers over "
                          "(finished results stay until the new ones are complete)")
    show = sub.add_parser("config", help="print the resolved config as JSON")
    show.add_argument("config", nargs="?")
    show.add_argument("--set", dest="overrides", action="append", default=[])
    rep = sub.add_parser("reproduce", help="run a figure's configs and draw it")
    rep.add_argument("figure", help="figure name, or 'list'")
    rep.add_argument("--scale", choices=("quick", "paper"), default="quick")
    rep.add_argument("--out", default="results", help="parent folder of the figure's runs")
    rep.add_argument("--quiet", action="store_true")
    rep.add_argument("--only", metavar="RUN[,RUN...]",
                     help="run only these of the figure's runs (the figure is drawn from every "
                          "run folder that is complete)")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field in every run, e.g. --set samplers.sgd.n_runs=500")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .distributed import SchedulerError
    from .experiment import Interrupted, ResultsFolderError

    try:
        if args.command == "config":
            print(json.dumps(load_config(args.config, args.overrides).to_dict(), indent=2))
            return 0
        if args.command == "reproduce":
            from .reproduce import reproduce
            only = tuple(r for r in (args.only or "").split(",") if r)
            return reproduce(args.figure, scale=args.scale, out=Path(args.out), quiet=args.quiet,
                             overrides=args.overrides, only=only)
        cfg = load_config(args.config, args.overrides)
        from .experiment import checkpoint_seconds
        from .progress import progress_seconds

        checkpoint_seconds(), progress_seconds()  # bad environment values: before any work
        if args.scheduler is not None:  # a malformed address fails before any work
            from .distributed import check_scheduler_address, connect_seconds

            check_scheduler_address(args.scheduler)
            connect_seconds()
        out = Path(args.out or f"results/{cfg.name}")
        from .experiment import run_experiment

        summary = run_experiment(cfg, out, show_progress=not args.quiet, scheduler=args.scheduler,
                                 restart=args.restart)
    except (ConfigError, ResultsFolderError, SchedulerError, ValueError, FileNotFoundError) as e:
        print(f"bayes-sgd: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"bayes-sgd: interrupted ({e})", file=sys.stderr)
        return 130
    _print_summary(summary, out)
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    lines = [f"results: {out}/"]
    if "rejection" in summary:
        r = summary["rejection"]
        lines.append(f"  rejection: {r['n_accepted']:,} of {r['n_samples']:,} accepted "
                     f"({r['acceptance_rate']:.2e}), {r['n_functions']:,} functions, "
                     f"{r['samples_per_s']:,.0f} samples/s")
    if "sgd" in summary:
        s = summary["sgd"]
        lines.append(f"  sgd: {s['n_fitted']:,} of {s['n_runs']:,} runs fitted S, "
                     f"{s['n_functions']:,} functions, median {s['epochs_to_fit_median']} epochs, "
                     f"{s['runs_per_s']:.1f} runs/s")
    for pair, by_k in summary["agreement"]["pairs"].items():
        for k, r in by_k.items():
            w, wo = r["with_target"], r["without_target"]
            if w["pearson"] is not None:
                lines.append(f"  {pair} {k}: {w['n_functions']} functions, Pearson {w['pearson']:.3f}, "
                             f"Spearman {w['spearman']:.3f} (without target: "
                             f"{wo['pearson'] if wo['pearson'] is None else round(wo['pearson'], 3)})")
    for pair, m in summary["agreement"].get("measures", {}).items():
        v = m["values"]
        mean, within = v["weighted_mean_log10_ratio"], v["frac_within_1_decades"]
        if mean["value"] is None or mean["ci"] is None:
            continue
        lines.append(f"  {pair}: {m['q']}-weighted mean log10 P_{m['q']}/P_{m['p']} "
                     f"{mean['value']:+.3f} [{mean['ci'][0]:+.3f}, {mean['ci'][1]:+.3f}]"
                     + (f" (bias-corrected {mean['value_bias_corrected']:+.3f}, "
                        f"{mean['value_half_runs']:+.3f} at half the runs)"
                        if mean.get("value_half_runs") is not None
                        and mean.get("value_bias_corrected") is not None else "") + ", "
                     f"{100 * within['value']:.0f} % of {m['q']} within 1 decade, "
                     f"{100 * v['q_mass_p_known']['value']:.0f} % with P_{m['p']} known")
    print("\n".join(lines))


def console() -> None:
    """The ``bayes-sgd`` console script: ``main`` with its exit code.

    After an interrupt the checkpoint is already on disk, but XLA may still be running work that
    was queued before the signal; tearing the interpreter down under it can crash (SIGSEGV), so
    an interrupted run leaves with ``os._exit`` once its output is flushed."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
