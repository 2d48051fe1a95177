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

__all__ = ["KINDS", "draw", "run_metrics", "corrupted_target", "concentration", "nngp_limit",
           "sample_concentration", "draw_width", "draw_random_labels", "draw_flatness", "draw_distance", "draw_runs_table"]

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


def sample_concentration(bits, sample_size: int) -> dict:
    """Mean plug-in entropy (bits) and top-function mass of ``sample_size`` draws, over the
    consecutive batches of ``sample_size`` rows of the 0/1 functions ``bits`` (n_draws, |E|):
    what ``concentration`` of ``sample_size`` SGD runs would show if SGD sampled the
    distribution the rows were drawn from (the same estimator, so the same bias)."""
    bits = np.asarray(bits, np.uint8)
    n_b = len(bits) // int(sample_size)
    if n_b < 1:
        raise ValueError(f"sample_size: expected at most {len(bits)} (the draws), got {sample_size}")
    packed = np.packbits(bits, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    h, top = [], []
    for b in range(n_b):
        _, c = np.unique(keys[b * sample_size:(b + 1) * sample_size], return_counts=True)
        q = c / c.sum()
        h.append(-(q * np.log2(q)).sum())
        top.append(q.max())
    return {"entropy_bits": _r(np.mean(h)), "entropy_bits_sd": _r(np.std(h)),
            "top_mass": _r(np.mean(top)), "top_mass_sd": _r(np.std(top)),
            "sample_size": int(sample_size), "n_batches": int(n_b)}


def nngp_limit(folder: str | Path, *, n_draws: int = 200_000, seed: int = 0) -> dict:
    """The infinite-width point of the width sweep: the NNGP posterior of the run in ``folder``
    (its task and kernel; the analytic NNGP kernel depends on depth and sigmas, not on width).

    EP on S gives ln P(S) (``log10_P_S``; the summary's ``gp.log10_P_S`` in the conditional mode)
    and the predictive ``f_E | S ~ N(m, C)`` (``gp.ep_predictive``). From it:

    - ``test_error``: the P_B-weighted test error over the whole posterior,
      ``(1/|E|) sum_x P(sign f(x) != y(x) | S)`` = mean of ``Phi(-m_x / sqrt(C_xx))`` over the
      E inputs labelled 1 and ``Phi(m_x / sqrt(C_xx))`` over those labelled 0 (E inputs that are
      also in S carry S's label); ``test_error_mc`` the same from ``n_draws`` draws;
    - ``pac_bayes_bound`` from ln P(S) (delta = 0.01, ``gp.pac_bayes_bound``);
    - ``top_mass_posterior``: the most frequent function's share of the ``n_draws`` draws (the
      posterior's top-function mass, binomial standard error ``top_mass_posterior_se``);
    - ``sampled``: ``sample_concentration`` of the draws with ``sample_size`` = the run's SGD
      ``n_runs``, the entropy and top mass that P_SGD's would have if SGD sampled P_B.

    There is no P_SGD at infinite width here, so no agreement measure.
    """
    from .gp import pac_bayes_bound

    cfg, task, prob, st, mean, cov, err = _nngp_posterior(folder)
    slot = np.asarray(prob.e_slot)
    free = slot >= prob.n_S
    y = np.asarray(task.y_test).astype(bool)
    rng = np.random.default_rng([seed, 15])
    draws = rng.multivariate_normal(mean, cov, size=int(n_draws), method="eigh") > 0
    bits = np.empty((len(draws), len(slot)), np.uint8)
    bits[:, free] = draws[:, slot[free] - prob.n_S]
    bits[:, ~free] = (prob.y_S[slot[~free]] > 0)[None, :]
    packed = np.packbits(bits, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, counts = np.unique(keys, return_counts=True)
    top = counts.max() / len(keys)
    log_ps = float(st.log_Z)
    return {"log10_P_S": _r(log_ps / math.log(10), 6),
            "pac_bayes_bound": _r(pac_bayes_bound(min(log_ps, 0.0), task.m, delta=0.01), 6),
            "test_error": _r(err, 6),
            "test_error_mc": _r((bits != y[None, :]).mean(), 6),
            "top_mass_posterior": _r(top, 6),
            "top_mass_posterior_se": _r(math.sqrt(top * (1 - top) / len(keys)), 6),
            "n_distinct_in_draws": int(len(counts)), "n_draws": int(n_draws),
            "ep_converged": bool(st.converged),
            "sampled": sample_concentration(bits, int(cfg.samplers.sgd.n_runs))}


def _nngp_posterior(folder):
    """EP on S for the run in ``folder`` -> (cfg, task, GPProblem, EP state, predictive mean and
    covariance on E's free slots, P_B-weighted test error over the whole posterior)."""
    from scipy.special import log_ndtr

    from .config import config_from_dict
    from .gp import ep_posterior, ep_predictive
    from .models import build_model
    from .samplers import GPProblem, gp_kernel
    from .tasks import build_task

    r = results.load(folder)
    cfg = config_from_dict(r.config)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    prob = GPProblem.from_task(task, lambda X: gp_kernel(cfg, model, X)[0])
    if prob.conflict_S:
        raise ValueError(f"{folder}: S labels one input both ways (P(S) = 0): no NNGP posterior")
    S, E = slice(0, prob.n_S), slice(prob.n_S, None)
    st = ep_posterior(prob.K[S, S], prob.y_S)
    # an E input of zero prior variance (the all-zero input with sigma_b = 0) has f = 0 exactly,
    # label 0 (labels are f > 0, as the GP sampler's orthants treat it): mean and covariance 0
    K_EE = prob.K[E, E]
    pos = np.diag(K_EE) > 0
    mean, cov = np.zeros(len(K_EE)), np.zeros_like(K_EE)
    mean[pos], cov[np.ix_(pos, pos)] = ep_predictive(prob.K[S, S], prob.K[S, E][:, pos],
                                                     K_EE[np.ix_(pos, pos)], st)
    slot = np.asarray(prob.e_slot)
    free = slot >= prob.n_S
    y = np.asarray(task.y_test).astype(bool)
    # P(f(x) > 0 | S) per E position
    p1 = np.empty(len(slot))
    p1[~free] = (prob.y_S[slot[~free]] > 0).astype(float)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), np.where(mean > 0, np.inf, -np.inf))
    p1[free] = np.exp(log_ndtr(z))[slot[free] - prob.n_S]
    err = float(np.where(y, 1.0 - p1, p1).mean())
    return cfg, task, prob, st, mean, cov, err


def posterior_test_error(folder) -> float:
    """The NNGP posterior's expected test error on E for the run in ``folder`` (``nngp_limit``'s
    ``test_error``: mean over E of P_B(sign f(x) != y(x) | S) from EP's predictive marginals),
    over the whole posterior, not only the functions a sampler found."""
    return _nngp_posterior(folder)[-1]


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


def _lines(ax, t, cols, labels, *, group_label=None, logx=False) -> dict:
    """One line per (group, column); returns their colours by (group, column)."""
    colours = {}
    for g, sub in t.groupby("group"):
        for col, lab, ls in zip(cols, labels, ("-", "--", ":", "-.")):
            if col in sub and sub[col].notna().any():
                gl = f", {group_label} {g:g}" if group_label else ""
                (ln,) = ax.plot(sub["x"], sub[col].astype(float), ls, marker="o", label=f"{lab}{gl}")
                colours[(g, col)] = ln.get_color()
    if logx:
        ax.set_xscale("log")
    ax.legend(fontsize=7)
    return colours


# width panels: (columns, labels, {column: the NNGP limit's key drawn at infinite width})
_WIDTH_PANELS = (
    ("test error and bound vs width (star: NNGP, whole posterior)",
     ["sgd_test_error", "gp_test_error", "pac_bayes_bound"],
     ["P_SGD test error", "P_B (GP) test error over SGD's functions", "PAC-Bayes bound"],
     {"gp_test_error": "test_error", "pac_bayes_bound": "pac_bayes_bound"}),
    ("log10 P(S) (star: NNGP)", ["gp_log10_P_S", "rejection_log10_P_S"],
     ["log10 P(S) GP", "log10 P(S) rejection (this width)"], {"gp_log10_P_S": "log10_P_S"}),
    ("entropy (star: n_runs draws of the NNGP's P_B)", ["sgd.entropy_bits", "gp.entropy_bits"],
     ["H(P_SGD) bits", "H(P_B) over SGD's functions"], {"sgd.entropy_bits": "sampled.entropy_bits"}),
    ("agreement and top mass (star: n_runs draws of the NNGP's P_B)",
     ["agreement_gp_sgd_k1.spearman", "sgd.top_mass"],
     ["Spearman log P_SGD vs log P_B", "top-function mass of P_SGD"],
     {"sgd.top_mass": "sampled.top_mass"}),
)


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def draw_width(folders: dict[str, Path], *, nngp: bool = True, nngp_draws: int = 200_000):
    """Runs named ``w<width>_c<corruption %>``.  With ``nngp`` the infinite-width limit
    (``nngp_limit`` of each corruption's first run) is drawn as the last point of every panel
    (stars at the "inf" tick) and reported in the metrics as ``nngp_c<corruption %>``."""
    import matplotlib.pyplot as plt

    metrics = {n: run_metrics(f) for n, f in folders.items()}
    t = _curves(metrics, "w", "c")
    t["group"] = t["group"] / 100
    limits = {}
    if nngp:
        for name in t.drop_duplicates("group")["run"]:
            c = _param(name, "c")
            limits[c / 100] = metrics_key = f"nngp_c{c:g}"
            metrics[metrics_key] = nngp_limit(folders[name], n_draws=nngp_draws)
    widths = sorted(t["x"].unique())
    x_inf = widths[-1] * 4
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, (title, cols, labels, lim) in zip(axes, _WIDTH_PANELS):
        colours = _lines(ax, t, cols, labels, group_label="corrupt", logx=True)
        for g, key in limits.items():
            for col, lk in lim.items():
                v = _get(metrics[key], lk)
                if v is not None and (g, col) in colours:
                    ax.plot([x_inf], [v], "*", ms=12, color=colours[(g, col)], mec="k", mew=0.5)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.3))  # off the curves
        ax.set_xlabel("hidden width")
        ticks = [*widths, x_inf] if limits else widths
        ax.set_xticks(ticks, [f"{w:g}" for w in widths] + (["inf\n(NNGP)"] if limits else []),
                      fontsize=7)
        ax.minorticks_off()
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
