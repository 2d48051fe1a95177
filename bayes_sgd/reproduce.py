"""``bayes-sgd reproduce FIGURE``: run every config of one of the paper's figures, then draw it.

A figure is a base config (``bayes_sgd/experiments/fig_*.toml``, the quick scale) plus one list
of ``--set``-style overrides per run.  ``reproduce(FIGURE)`` runs each into ``OUT/FIGURE/<run>``
(a complete folder of the same config is skipped, a partial one resumed), then writes
``OUT/FIGURE/FIGURE.png`` and the measured numbers to ``OUT/FIGURE/FIGURE.json``.
``--scale paper`` applies the paper-scale overrides of ``PAPER_SCALE`` on top of the base
config (and is a different config, so use another ``--out`` than the quick run's).

Figures whose runs share a task draw P_B from one rejection-only ``bayes`` run and P_SGD from
SGD-only runs (``reference``), so the expensive rejection sampling is done once per figure.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import Config, ConfigError, apply_overrides, config_from_dict

__all__ = ["FIGURES", "PAPER_SCALE", "Figure", "Run", "reproduce", "figure_configs",
           "config_path"]

# Sparse n = 7 targets of increasing C_LZ (8 ones in 128; 128-bit truth tables, row i = binary
# of i).  For train_seed 0 and |S| = 16 each has exactly one 1 in S, at a different input of S
# (123, 113, 93, 58), so P(S) stays ~1e-3 (rejection sampling works at quick scale) while the
# labels of S, and so P_B(f|S) and P_SGD(f|S), differ from target to target.
TARGETS_N7 = {
    # x1 x2 x3 x4 (preset and4): C_LZ 21
    "clz21": "and4",
    # x1 x2 x3 (x4 xor x7): C_LZ 31.5
    "clz31": "0" * 112 + "0101010110101010",
    # x1 x3 x5 x7: C_LZ 45.5
    "clz45": ("0000000000000000000000000000000000000000000000000000000000000000"
              "0000000000000000000001010000010100000000000000000000010100000101"),
    # one 1 at input 58 of S, seven at random inputs of E (numpy default_rng(191)): C_LZ 70
    "clz70": ("0000000000000001001010000000000000000000000000000000100000100000"
              "0000000000000000000000000000000000001000000000000000000100000010"),
}


@dataclass(frozen=True)
class Run:
    name: str
    overrides: tuple[str, ...] = ()
    title: str = ""


@dataclass(frozen=True)
class Figure:
    name: str
    panel: str  # the brief's letter
    config: str  # file name in bayes_sgd/experiments
    shows: str
    runs: tuple[Run, ...]
    kind: str = "comparison"  # "prior" or "comparison"
    reference: str | None = None  # run whose P_B every other run shares
    x: str = "rejection"
    color: str = "lz"
    paper: tuple[str, ...] = ()  # overrides for --scale paper, applied to every run
    paper_only: tuple[str, ...] = ()  # runs left out at quick scale (too slow on a CPU)
    n7: bool = True


_BAYES = Run("bayes", ("samplers.sgd.enabled=false",), "P_B (rejection)")


def _sgd(name, *ov, title=""):
    return Run(name, ("samplers.rejection.enabled=false", *ov), title or name)


_PAPER_N7 = ("samplers.rejection.n_samples=100_000_000", "samplers.sgd.n_runs=100_000")

FIGURES: dict[str, Figure] = {f.name: f for f in [
    Figure("prior_n7", "a", "fig_prior_n7.toml",
           "Zipf rank plot of the prior P(f) over all 2^7 inputs and log10 P(f) vs C_LZ "
           "with the simplicity-bias upper-bound line", (Run("prior", (), "prior"),),
           kind="prior", paper=("samplers.rejection.n_samples=100_000_000",)),
    Figure("targets_n7", "b", "fig_targets_n7.toml",
           "P_SGD vs P_B (rejection) for targets of C_LZ 21, 31.5, 45.5, 70 (8 ones each)",
           tuple(Run(k, (f"task.target={v}",), f"target C_LZ = {k[3:]}{'.5' if k in ('clz31', 'clz45') else ''}")
                 for k, v in TARGETS_N7.items()), paper=_PAPER_N7),
    Figure("batch_n7", "c", "fig_batch_n7.toml",
           "P_SGD vs P_B for batch sizes 1, 8 and 16 (= |S|, full batch)",
           (_BAYES, _sgd("batch1", "samplers.sgd.batch_size=1", title="SGD, batch 1"),
            _sgd("batch8", "samplers.sgd.batch_size=8", title="SGD, batch 8"),
            _sgd("batch16", "samplers.sgd.batch_size=16", title="SGD, batch 16 (full)")),
           reference="bayes", paper=_PAPER_N7),
    Figure("optimisers_n7", "d", "fig_optimisers_n7.toml",
           "P_SGD vs P_B for the optimisers sgd, adam, adagrad, rmsprop",
           (_BAYES, _sgd("sgd", "samplers.sgd.optimizer=sgd", "samplers.sgd.lr=0.1", title="SGD, lr 0.1"),
            _sgd("adam", "samplers.sgd.optimizer=adam", "samplers.sgd.lr=0.01", title="Adam, lr 0.01"),
            _sgd("adagrad", "samplers.sgd.optimizer=adagrad", "samplers.sgd.lr=0.1", title="Adagrad, lr 0.1"),
            _sgd("rmsprop", "samplers.sgd.optimizer=rmsprop", "samplers.sgd.lr=0.01", title="RMSprop, lr 0.01")),
           reference="bayes", paper=_PAPER_N7),
    Figure("overtraining_n7", "e", "fig_overtraining_n7.toml",
           "P_SGD vs P_B when training stops at 100 % training accuracy vs 64 epochs later",
           (_BAYES, _sgd("after0", "samplers.sgd.epochs_after_fit=0", title="stop at fit"),
            _sgd("after64", "samplers.sgd.epochs_after_fit=64", title="64 epochs after fit")),
           reference="bayes", paper=_PAPER_N7),
    Figure("images", "f", "fig_images.toml",
           "P_SGD vs P_B (NNGP/EP) on binarised MNIST and Fashion-MNIST, FCN and CNN",
           (Run("mnist_fcn", (), "MNIST, FCN"),
            Run("mnist_cnn", ("model.arch=cnn", "samplers.gp.kernel=monte-carlo"), "MNIST, CNN"),
            Run("fashion_fcn", ("task.dataset=fashion-mnist",), "Fashion-MNIST, FCN"),
            Run("fashion_cnn", ("task.dataset=fashion-mnist", "model.arch=cnn",
                                "samplers.gp.kernel=monte-carlo"), "Fashion-MNIST, CNN")),
           x="gp", color="test_error", n7=False,
           # quick scale: FCN panels only (a CNN run of 250 SGD runs on |S| = 500, even with
           # 4 channels per layer, had not finished one run after 16 min on 2 cores)
           paper_only=("mnist_cnn", "fashion_cnn"),
           paper=("task.train_size=10_000", "task.test_size=100", "model.widths=[1024, 1024]",
                  "samplers.sgd.optimizer=sgd", "samplers.sgd.lr=0.01",
                  "samplers.sgd.max_epochs=500", "samplers.sgd.n_runs=10_000",
                  "samplers.gp.max_functions=2000")),
]}

PAPER_SCALE = {name: f.paper for name, f in FIGURES.items()}
SCALES = ("quick", "paper")


def config_path(figure: Figure) -> Path:
    return Path(str(resources.files("bayes_sgd") / "experiments" / figure.config))


def figure_configs(name: str, *, scale: str = "quick",
                   overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Config]:
    """The validated config of every run of a figure at ``scale``, in run order (at quick
    scale without the figure's ``paper_only`` runs).

    Order of overrides: base file, then the scale's, then the run's, then ``overrides``.
    """
    import tomllib

    if name not in FIGURES:
        raise ConfigError(f"figure: expected one of {sorted(FIGURES)}, got {name!r}")
    if scale not in SCALES:
        raise ConfigError(f"--scale: expected one of {list(SCALES)}, got {scale!r}")
    fig = FIGURES[name]
    base = tomllib.loads(config_path(fig).read_text())
    out = {}
    for run in fig.runs:
        if scale == "quick" and run.name in fig.paper_only:
            continue
        data = json.loads(json.dumps(base))  # deep copy
        scale_ov = list(fig.paper) if scale == "paper" else []
        ov = [*scale_ov, *run.overrides, *overrides, f"name={fig.name}_{run.name}"]
        try:
            out[run.name] = config_from_dict(apply_overrides(data, ov))
        except ConfigError as e:
            raise ConfigError(f"{name}/{run.name}: {e}") from None
    return out


def _print_list() -> None:
    rows = [("figure", "panel", "runs", "config", "shows")]
    for f in FIGURES.values():
        rows.append((f.name, f"({f.panel})", ", ".join(
            r.name + (" (paper scale only)" if r.name in f.paper_only else "") for r in f.runs),
                     f"experiments/{f.config}", f.shows))
    w = [max(len(r[i]) for r in rows[:]) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
    print("\nbayes-sgd reproduce FIGURE [--scale quick|paper] [--out DIR]  ->  DIR/FIGURE/FIGURE.png")


def _err(msg: str) -> int:
    print(f"bayes-sgd reproduce: error: {msg}", file=sys.stderr)
    return 2


def reproduce(figure: str, *, scale: str = "quick", out: str | Path = "results",
              quiet: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> int:
    """Run a figure's configs and draw it; ``"list"`` prints the table.  Returns an exit code.

    ``overrides`` (``key=value`` strings) apply to every run after the scale's, e.g. to make a
    tiny test run.
    """
    if figure == "list":
        _print_list()
        return 0
    try:
        cfgs = figure_configs(figure, scale=scale, overrides=overrides)
    except ConfigError as e:
        return _err(str(e))
    spec = FIGURES[figure]
    folder = Path(out) / figure
    from .experiment import Interrupted, run_experiment
    from .results_folder import ResultsFolderError, is_complete, prepare_results_folder
    from .tasks import build_task

    # Every task is built (datasets found and checked) before any run starts.
    for name, cfg in cfgs.items():
        try:
            build_task(cfg.task)
        except (FileNotFoundError, ValueError, OSError) as e:
            return _err(f"{figure}/{name}: {e}")
    folders = {}
    for name, cfg in cfgs.items():
        run_dir = folder / name
        folders[name] = run_dir
        if is_complete(run_dir, cfg):
            if not quiet:
                print(f"{figure}/{name}: complete, skipped ({run_dir})")
            continue
        try:
            prepare_results_folder(run_dir, cfg)  # refuses another config's folder
            if not quiet:
                print(f"{figure}/{name}: running into {run_dir}", flush=True)
            summary = run_experiment(cfg, run_dir, show_progress=not quiet)
        except ResultsFolderError as e:
            return _err(f"{figure}/{name}: {e} (a --scale paper run needs another --out than "
                        "the quick run's)")
        except (ValueError, FileNotFoundError) as e:
            return _err(f"{figure}/{name}: {e}")
        except Interrupted as e:
            print(f"bayes-sgd reproduce: interrupted in {figure}/{name} ({e})", file=sys.stderr)
            return 130
        if not quiet:
            t = summary.get("timings_s", {})
            print(f"{figure}/{name}: done in {sum(t.values()):.0f} s", flush=True)

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import figures

    if spec.kind == "prior":
        fig, metrics = figures.draw_prior(folders)
    else:
        titles = {r.name: r.title or r.name for r in spec.runs}
        fig, metrics = figures.draw_comparison(folders, reference=spec.reference, x=spec.x,
                                               titles=titles, color=spec.color)
    fig.suptitle(f"{figure} ({scale} scale): {spec.shows}", fontsize=10, y=1.03)
    png = folder / f"{figure}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    report = {"figure": figure, "scale": scale, "shows": spec.shows,
              "runs": {n: str(p) for n, p in folders.items()}, "metrics": metrics}
    (folder / f"{figure}.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"{figure}: {png}")
    for name, m in metrics.items():
        print(f"  {name}: " + _one_line(m))
    return 0


def _one_line(m: dict) -> str:
    parts = []
    for k, v in m.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
            parts.append(f"{k} [{v}]")
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)
