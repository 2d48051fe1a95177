"""Figures for the claims around the paper (issue 15), measured in function space.

Each ``draw_*`` takes ``{run name: results folder}`` in the figure's run order and returns
``(matplotlib figure, metrics)``, like ``bayes_sgd.figures``; ``bayes_sgd.reproduce`` dispatches
to ``draw(kind, folders)`` for the figure kinds in ``KINDS``.

- ``width``: P_SGD- and P_B-weighted test error, GP log10 P(S) and the PAC-Bayes bound, the
  concentration of P_SGD and P_B (entropy, top-function mass) and their agreement, against the
  hidden width, for several label-corruption fractions;
- ``random_labels``: the same against the corruption fraction (``task.corrupt_mode``: labels
  redrawn, or flipped), with epochs to fit S;
- ``flatness``: per trained network (retrained by run id, ``bayes_sgd.flatness``) the top Hessian
  eigenvalue and the Hutchinson trace of the training loss, against test error and log P_SGD,
  next to the function-space volume log P_B(f); plus the layer-rescaling check;
- ``distance``: distances between SGD solutions with the same / different functions and from
  their initialisations, against the parameter count (``bayes_sgd.geometry``);
- ``runs_table``: test error and agreement per run (optimisers and batch sizes on MNIST).

P_B here is the GP (NNGP, EP) estimate scored on the functions SGD found (``samplers.gp``), so
the P_B-weighted test error and entropy are over those functions, renormalised (the summary's
``gp.mass_covered`` says how much of P_B(.|S) they hold); where a run also sampled by rejection
its P_B is reported too.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import results
from .analysis import compare
from .corruption import corrupted_target

__all__ = ["KINDS", "draw", "run_metrics", "corrupted_target", "concentration",
           "draw_width", "draw_random_labels", "draw_flatness", "draw_distance", "draw_runs_table"]

KINDS = ("width", "random_labels", "flatness", "distance", "runs_table")


def _r(x, nd=4):
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def concentration(p) -> dict:
    """Entropy (bits) and top mass of a distribution given by weights ``p`` (renormalised)."""
    p = np.asarray(p, float)
    p = p[np.isfinite(p) & (p > 0)]
    if not len(p):
        return {"entropy_bits": None, "top_mass": None, "n_functions": 0}
    p = p / p.sum()
    return {"entropy_bits": _r(-(p * np.log2(p)).sum()), "top_mass": _r(p.max()),
            "n_functions": int(len(p))}


def run_metrics(folder: str | Path) -> dict:
    """The numbers of one run that the claims' figures show (see the module docstring)."""
    from .figures import mean_test_error

    r = results.load(folder)
    df, s = r.functions, r.summary
    out: dict = {}
    task = s.get("task", {})
    if task.get("corrupt_fraction"):
        out["corrupt_mode"] = task.get("corrupt_mode")
        out["labels_changed"] = task.get("n_labels_changed")  # of S's, against the truth
    if "sgd" in s:
        sg = s["sgd"]
        out["sgd_fitted"] = f"{sg['n_fitted']}/{sg['n_runs']}"
        out["epochs_to_fit_median"] = sg.get("epochs_to_fit_median")
        out["epochs_to_fit_mean"] = _r(sg.get("epochs_to_fit_mean"), 2)
        out["sgd_test_error"] = _r(mean_test_error(df, "sgd"))
        out["sgd"] = concentration(df.loc[df["sampler"] == "sgd", "p"])
    if "gp" in s:
        g = s["gp"]
        out["gp_log10_P_S"] = _r(g.get("log10_P_S"))
        out["pac_bayes_bound"] = _r(g.get("pac_bayes_bound"))
        out["gp_mass_covered"] = _r(g.get("mass_covered"))
        out["gp_test_error"] = _r(mean_test_error(df, "gp"))
        gp = df[df["sampler"] == "gp"]
        out["gp"] = concentration(10.0 ** gp["log10_p"].astype(float))
        c = compare(df, "sgd", "gp", k=1)
        out["agreement_gp_sgd_k1"] = {"n": c["n_functions"], "pearson": _r(c["pearson"], 3),
                                      "spearman": _r(c["spearman"], 3)}
    if "rejection" in s:
        rj = s["rejection"]
        out["rejection_log10_P_S"] = _r(rj.get("log10_P_S_sampled"))
        out["rejection_accepted"] = rj.get("n_accepted")
        if rj.get("n_accepted"):
            out["rejection_test_error"] = _r(mean_test_error(df, "rejection"))
            out["rejection"] = concentration(df.loc[df["sampler"] == "rejection", "p"])
            c = compare(df, "sgd", "rejection", k=1)
            out["agreement_rejection_sgd_k1"] = {
                "n": c["n_functions"], "pearson": _r(c["pearson"], 3), "spearman": _r(c["spearman"], 3)}
    return out


def _param(name: str, prefix: str) -> float:
    # run names encode the swept values: w40_c10 -> width 40, corruption 0.10
    for part in name.split("_"):
        if part.startswith(prefix) and part[len(prefix):].isdigit():
            return float(part[len(prefix):])
    raise ValueError(f"run name {name!r}: no '{prefix}<number>' part")


def _curves(metrics: dict, xkey: str, group: str | None):
    rows = []
    for name, m in metrics.items():
        rows.append({"run": name, "x": _param(name, xkey),
                     "group": _param(name, group) if group else 0.0,
                     **{k: v for k, v in m.items() if not isinstance(v, dict)},
                     **{f"{k}.{kk}": vv for k, v in m.items() if isinstance(v, dict)
                        for kk, vv in v.items()}})
    return pd.DataFrame(rows).sort_values(["group", "x"])


def _lines(ax, t, cols, labels, *, group_label=None, logx=False):
    for g, sub in t.groupby("group"):
        for col, lab, ls in zip(cols, labels, ("-", "--", ":", "-.")):
            if col in sub and sub[col].notna().any():
                gl = f", {group_label} {g:g}" if group_label else ""
                ax.plot(sub["x"], sub[col].astype(float), ls, marker="o", label=f"{lab}{gl}")
    if logx:
        ax.set_xscale("log")
    ax.legend(fontsize=7)


def draw_width(folders: dict[str, Path]):
    """Runs named ``w<width>_c<corruption %>``; width 0 = none (not used)."""
    import matplotlib.pyplot as plt

    metrics = {n: run_metrics(f) for n, f in folders.items()}
    t = _curves(metrics, "w", "c")
    t["group"] = t["group"] / 100
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    _lines(axes[0], t, ["sgd_test_error", "gp_test_error", "pac_bayes_bound"],
           ["P_SGD test error", "P_B (GP) test error", "PAC-Bayes bound"], group_label="corrupt", logx=True)
    axes[0].set_title("test error and bound vs width")
    _lines(axes[1], t, ["gp_log10_P_S", "rejection_log10_P_S"], ["log10 P(S) GP", "log10 P(S) rejection"],
           group_label="corrupt", logx=True)
    axes[1].set_title("log10 P(S) (the GP is the width limit)")
    _lines(axes[2], t, ["sgd.entropy_bits", "gp.entropy_bits"], ["H(P_SGD) bits", "H(P_B) bits"],
           group_label="corrupt", logx=True)
    axes[2].set_title("concentration: entropy")
    _lines(axes[3], t, ["agreement_gp_sgd_k1.spearman", "sgd.top_mass"],
           ["Spearman log P_SGD vs log P_B", "top-function mass of P_SGD"], group_label="corrupt", logx=True)
    axes[3].set_title("agreement and top mass")
    for ax in axes:
        ax.set_xlabel("hidden width")
    fig.tight_layout()
    return fig, metrics


def draw_random_labels(folders: dict[str, Path]):
    """Runs named ``c<corruption %>``."""
    import matplotlib.pyplot as plt

    metrics = {n: run_metrics(f) for n, f in folders.items()}
    modes = {m.get("corrupt_mode") for m in metrics.values()} - {None}
    how = "corrupted"
    if len(modes) == 1:
        how = {"redraw": "redrawn uniformly", "flip": "flipped"}[modes.pop()]
    t = _curves(metrics, "c", None)
    t["x"] = t["x"] / 100
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    _lines(axes[0], t, ["epochs_to_fit_median", "epochs_to_fit_mean"], ["median epochs to fit S", "mean"])
    axes[0].set_title("SGD fits S at every corruption")
    _lines(axes[1], t, ["gp_log10_P_S", "rejection_log10_P_S"], ["log10 P(S) GP (EP)", "log10 P(S) rejection"])
    axes[1].set_title("log10 P(S)")
    _lines(axes[2], t, ["sgd_test_error", "gp_test_error", "pac_bayes_bound"],
           ["P_SGD test error", "P_B (GP) test error", "PAC-Bayes bound"])
    axes[2].set_title("test error and bound")
    for ax in axes:
        ax.set_xlabel(f"fraction of S's labels {how}")
    fig.tight_layout()
    return fig, metrics


def flatness_table(folder: str | Path, *, max_networks: int = 200, lanczos_steps: int = 20,
                   probes: int = 50, seed: int = 0) -> pd.DataFrame:
    """Per fitted network of the run in ``folder`` (the first ``max_networks`` run ids):
    run_id, function, test_error, log10 P_SGD(f), log10 P_B(f) (GP, nan where not scored),
    lambda_max and trace of the Hessian of the training loss (Lanczos, Hutchinson)."""
    import jax

    from .config import config_from_dict
    from .flatness import functions_of, hutchinson_trace, loss_on_S, top_eigenvalue, trained_networks

    r = results.load(folder)
    cfg = config_from_dict(r.config)
    ids = r.runs.loc[r.runs["fitted"], "run_id"].to_numpy()[:max_networks]
    params, rec, model, task = trained_networks(cfg, ids)
    funcs = functions_of(model, params, task.x_test)
    f = loss_on_S(model, cfg.samplers.sgd.loss, task.x_train, task.y_train)
    lam, tr = [], []
    for i in range(len(ids)):
        p = jax.tree_util.tree_map(lambda a: a[i], params)
        lam.append(top_eigenvalue(f, p, key=jax.random.fold_in(jax.random.key(seed), 2 * i),
                                  steps=lanczos_steps))
        tr.append(hutchinson_trace(f, p, key=jax.random.fold_in(jax.random.key(seed), 2 * i + 1),
                                   n_probes=probes)[0])
    df = r.functions
    lp = {s: df[df["sampler"] == s].set_index("function")["log10_p"] for s in ("sgd", "gp")}
    err = df[df["sampler"] == "sgd"].set_index("function")["test_error"]
    return pd.DataFrame({
        "run_id": ids, "fitted_again": rec["fitted"], "function": funcs,
        "test_error": [err.get(x, np.nan) for x in funcs],
        "log10_p_sgd": [lp["sgd"].get(x, np.nan) for x in funcs],
        "log10_p_gp": [lp["gp"].get(x, np.nan) for x in funcs],
        "lambda_max": lam, "trace": tr})


def _spearman(a, b) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return {"n": int(ok.sum()), "spearman": None}
    return {"n": int(ok.sum()), "spearman": _r(stats.spearmanr(a[ok], b[ok])[0], 3)}


def rescaling_check(folder: str | Path, *, scales=(0.25, 4.0), lanczos_steps: int = 20) -> dict:
    """For the run's first fitted network: rescale layer 0 by a, layer 1 by 1/a; its function on E,
    log10 P_B(f|S) (GP, the run's kernel and method) and lambda_max before and after."""
    import jax

    from .config import config_from_dict
    from .flatness import functions_of, loss_on_S, rescale_layers, top_eigenvalue, trained_networks
    from .samplers import GPProblem, gp_kernel

    r = results.load(folder)
    cfg = config_from_dict(r.config)
    rid = r.runs.loc[r.runs["fitted"], "run_id"].to_numpy()[:1]
    params, _, model, task = trained_networks(cfg, rid, slots=1)
    p = jax.tree_util.tree_map(lambda a: a[0], params)
    f = loss_on_S(model, cfg.samplers.sgd.loss, task.x_train, task.y_train)
    nets = {1.0: p, **{a: rescale_layers(p, 0, a) for a in scales}}
    funcs = {a: functions_of(model, jax.tree_util.tree_map(lambda t: t[None], q), task.x_test)[0]
             for a, q in nets.items()}
    prob = GPProblem.from_task(task, lambda X: gp_kernel(cfg, model, X)[0])
    bits = np.array([[c == "1" for c in funcs[a]] for a in nets], np.uint8)
    sc = prob.score(bits, method=cfg.samplers.gp.method, mode=cfg.samplers.gp.mode, seed=cfg.seed)
    out = {}
    for i, (a, q) in enumerate(nets.items()):
        out[f"a={a:g}"] = {"same_function": funcs[a] == funcs[1.0],
                           "log10_P_B": _r(sc.log10_p[i]),
                           "lambda_max": _r(top_eigenvalue(f, q, key=jax.random.key(0),
                                                           steps=lanczos_steps), 5)}
    return out


def draw_flatness(folders: dict[str, Path], *, max_networks: int = 200):
    import matplotlib.pyplot as plt

    (name, folder), = folders.items()
    t = flatness_table(folder, max_networks=max_networks)
    t.to_csv(Path(folder).parent / "flatness_networks.csv", index=False)
    m: dict = {"n_networks": int(len(t)), "n_functions": int(t["function"].nunique()),
               "lambda_max_median": _r(t["lambda_max"].median()),
               "trace_median": _r(t["trace"].median())}
    for q in ("lambda_max", "trace", "log10_p_gp"):
        m[f"spearman_{q}_vs_test_error"] = _spearman(t[q], t["test_error"])
        m[f"spearman_{q}_vs_log10_p_sgd"] = _spearman(t[q], t["log10_p_sgd"])
    # per function (median sharpness of its networks): the question is which predicts error
    g = t.groupby("function").agg(lambda_max=("lambda_max", "median"), trace=("trace", "median"),
                                  test_error=("test_error", "first"), log10_p_gp=("log10_p_gp", "first"),
                                  log10_p_sgd=("log10_p_sgd", "first"))
    for q in ("lambda_max", "trace", "log10_p_gp"):
        m[f"per_function_spearman_{q}_vs_test_error"] = _spearman(g[q], g["test_error"])
    m["rescaling"] = rescaling_check(folder)
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, q, lab in zip(axes[:3], ("lambda_max", "trace", "log10_p_gp"),
                          ("top Hessian eigenvalue", "Hessian trace (Hutchinson)", "log10 P_B(f|S) (GP)")):
        ax.scatter(t[q], t["test_error"] + np.random.default_rng(0).uniform(-0.003, 0.003, len(t)),
                   c=t["log10_p_sgd"], s=10, cmap="viridis")
        if q != "log10_p_gp":
            ax.set_xscale("log")
        ax.set_xlabel(lab)
        ax.set_ylabel("test error (jittered)")
        ax.set_title(f"Spearman vs error {m[f'spearman_{q}_vs_test_error']['spearman']}")
    resc = m["rescaling"]
    a = list(resc)
    axes[3].bar(a, [resc[k]["lambda_max"] for k in a])
    axes[3].set_yscale("log")
    axes[3].set_title("rescaled layers: lambda_max; log10 P_B " +
                      ", ".join(f"{resc[k]['log10_P_B']}" for k in a), fontsize=8)
    fig.tight_layout()
    return fig, {name: m}


def draw_distance(folders: dict[str, Path], *, max_networks: int = 100):
    """Runs named ``w<width>``: distances between up to ``max_networks`` fitted solutions."""
    import matplotlib.pyplot as plt

    import jax
    from jax.flatten_util import ravel_pytree

    from .config import config_from_dict
    from .flatness import functions_of, trained_networks
    from .geometry import distance_summary

    metrics = {}
    for name, folder in folders.items():
        r = results.load(folder)
        cfg = config_from_dict(r.config)
        ids = r.runs.loc[r.runs["fitted"], "run_id"].to_numpy()[:max_networks]
        params, _, model, task = trained_networks(cfg, ids)
        funcs = functions_of(model, params, task.x_test)
        from .experiment import sgd_trainer_and_run_kwargs
        trainer, _ = sgd_trainer_and_run_kwargs(cfg, task, model, slots=1)
        init = np.stack([np.asarray(ravel_pytree(trainer._init_one(int(i))[0])[0]) for i in ids])
        final = np.stack([np.asarray(ravel_pytree(jax.tree_util.tree_map(lambda a: a[j], params))[0])
                          for j in range(len(ids))])
        metrics[name] = distance_summary(final, init, funcs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    dims = np.array([m["dim"] for m in metrics.values()])
    for key, lab in (("same_function", "SGD solutions, same function"),
                     ("different_function", "SGD solutions, different functions"),
                     ("between_inits", "initialisations"), ("from_init", "final - init")):
        axes[0].plot(dims, [m[key]["relative_spread"] for m in metrics.values()], "o-", label=lab)
    from .geometry import chi_relative_spread
    dd = np.geomspace(dims.min(), dims.max(), 50)
    axes[0].plot(dd, [chi_relative_spread(int(d)) for d in dd], "k--", label="chi_d (Gaussian pairs)")
    axes[0].set_xscale("log"), axes[0].set_yscale("log")
    axes[0].set_xlabel("parameters"), axes[0].set_ylabel("std / mean of distances")
    axes[0].legend(fontsize=7)
    for key, lab in (("same_function", "same function"), ("different_function", "different"),
                     ("between_inits", "between inits"), ("from_init", "from own init")):
        axes[1].plot(dims, [m[key]["mean"] / np.sqrt(m["dim"]) if m[key]["mean"] else np.nan
                            for m in metrics.values()], "o-", label=lab)
    axes[1].set_xscale("log"), axes[1].set_xlabel("parameters")
    axes[1].set_ylabel("mean distance / sqrt(parameters)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig, metrics


def draw_runs_table(folders: dict[str, Path]):
    import matplotlib.pyplot as plt

    metrics = {n: run_metrics(f) for n, f in folders.items()}
    names = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(names))
    for off, key, lab in ((-0.2, "sgd_test_error", "P_SGD"), (0.2, "gp_test_error", "P_B (GP)")):
        axes[0].bar(x + off, [metrics[n].get(key) or np.nan for n in names], 0.4, label=lab)
    axes[0].set_xticks(x, names, rotation=30, fontsize=8), axes[0].set_ylabel("test error")
    axes[0].legend()
    axes[1].bar(x, [metrics[n].get("agreement_gp_sgd_k1", {}).get("spearman") or np.nan for n in names])
    axes[1].set_xticks(x, names, rotation=30, fontsize=8)
    axes[1].set_ylabel("Spearman log P_SGD vs log P_B (k >= 1)")
    fig.tight_layout()
    return fig, metrics


def draw(kind: str, folders: dict[str, Path]):
    table = {"width": draw_width, "random_labels": draw_random_labels, "flatness": draw_flatness,
             "distance": draw_distance, "runs_table": draw_runs_table}
    if kind not in table:
        raise ValueError(f"figure kind: expected one of {sorted(table)}, got {kind!r}")
    return table[kind](folders)
