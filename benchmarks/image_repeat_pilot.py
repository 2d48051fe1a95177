"""Do SGD's functions on E repeat?  A cheap pilot for the quick image settings (issue 16).

One set of SGD runs per (dataset, |S|, width) with |E| = 100 test points; each trained
network's function is read on the first e points of E (nested, e = 10, 20, 30, ...), so one
training gives every |E|.  For each e: the number of distinct functions SGD found, how many it
saw >= 5 times, the share of runs on its top function, and from the GP posterior (EP on S,
the predictive on E sampled 10^6 times, as ``gp_top_table.py``): how many functions would be
seen >= 5 times if the same number of runs followed P_B (sum over sampled patterns of
P(Binomial(N, p) >= 5), p = sampled frequency), the top function's P_B, and the share of SGD's
runs whose function has P_B >= 5 / N (P_B from the sampled frequency: functions below 10^-5
read as 0), i.e. that N runs can resolve, and how many of SGD's functions seen >= 5 times have
such a P_B (``sgd_seen_ge5_pb_resolvable``: the quick-setting rule's count).

    python benchmarks/image_repeat_pilot.py --dataset mnist --train-size 1000 --runs 300

The config is ``fig_images.toml`` (FCN, sigma_b 0.0357, Adam lr 0.001, batch 32, BCE, stop at
the fit) with the overrides given; one line per e is printed and appended to ``--out`` (CSV).

``--gp-only`` skips SGD and, for each e, takes the draw ``reproduce images`` makes at |E| = e
(not the nested one): the rule that chose the quick |E| (README, "Image figure (f)").

    python benchmarks/image_repeat_pilot.py --gp-only --dataset mnist --tests 20 25 30 35 40 45 50

``--figure-draws`` (Fashion-MNIST, whose S is drawn from the train split before E and so is
the same for every |E|): one SGD training on S, each network read on the figure's own draw of
E for every e (the E of ``reproduce images`` at |E| = e, not a nested one), counted at the
run-count prefixes ``--checkpoints`` (runs 0..N-1 are exactly the runs of an N-run figure, run
r's randomness depending on r alone).  So the SGD columns are the figure's own counts at each
(|E|, N), and the GP columns are on the same S and E.  Refused when S differs between the draws.

    python benchmarks/image_repeat_pilot.py --figure-draws --dataset fashion-mnist --train-size 200 \
        --tests 30 35 40 45 50 --runs 2500 --checkpoints 1000 1500 2000 2500
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from gp_top_table import append_csv  # benchmarks/ is on sys.path when run as a script

FASHION = ["task.dataset=fashion-mnist", "task.split=train", "task.test_split=test"]
CONFIG = Path(__file__).resolve().parents[1] / "bayes_sgd" / "experiments" / "fig_images.toml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--tests", type=int, nargs="+", default=[10, 20, 30, 40, 50, 60, 80, 100])
    ap.add_argument("--gp-samples", type=int, default=1_000_000)
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides")
    ap.add_argument("--out", default=None, help="CSV file (appended)")
    ap.add_argument("--gp-only", action="store_true",
                    help="no SGD: for each e, the config's own draw with |E| = e (S and E as "
                         "`reproduce images` draws them), and the number of functions the GP "
                         "predicts seen >= 5 times in --gp-runs runs")
    ap.add_argument("--gp-runs", type=int, nargs="+", default=[500, 1000, 2000],
                    help="with --gp-only: the run counts N of the predicted repeats")
    ap.add_argument("--figure-draws", action="store_true",
                    help="one SGD training, each network read on the figure's own E for every "
                         "e (needs S independent of |E|: Fashion-MNIST); counts at --checkpoints")
    ap.add_argument("--checkpoints", type=int, nargs="*", default=[],
                    help="with --figure-draws: run-count prefixes to report (default: --runs)")
    ap.add_argument("--save", default=None,
                    help="with --figure-draws: .npz of SGD's function counts per checkpoint")
    a = ap.parse_args(argv)
    if a.gp_only:
        return gp_only(a)
    if a.figure_draws:
        return figure_draws(a)

    from bayes_sgd.config import load_config
    from bayes_sgd.counting import unpack_bits
    from bayes_sgd.gp import sample_sign_patterns
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import sgd_trainer_and_run_kwargs
    from bayes_sgd.tasks import build_task

    n_E = max(a.tests)
    over = [f"task.train_size={a.train_size}", f"task.test_size={n_E}",
            f"model.widths=[{a.width}, {a.width}]", f"samplers.sgd.n_runs={a.runs}",
            *(FASHION if a.dataset == "fashion-mnist" else []), *a.set]
    cfg = load_config(CONFIG, over)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
    t0, c0 = time.perf_counter(), os.times()
    done = [0]

    def progress(n_done, n_fit):  # one line per ~10 % of the runs (long pilots on a shared machine)
        step = max(1, a.runs // 10)
        if (done[0] + n_done) // step > done[0] // step:
            print(f"  {done[0] + n_done}/{a.runs} runs, {time.perf_counter() - t0:.0f} s", flush=True)
        done[0] += n_done

    res = trainer.run(range(a.runs), progress=progress, **run_kw)
    sgd_s = time.perf_counter() - t0
    c1 = os.times()
    sgd_cpu = (c1.user + c1.children_user) - (c0.user + c0.children_user)
    keys, counts = res.counter.table()
    bits = unpack_bits(keys, n_E)
    n_run = counts.sum(axis=1)
    fit_ep = np.array([r[1] for r in res.records.values() if r[0]])

    m = task.m
    t0 = time.perf_counter()
    mean, cov = _predictive(task, model, n_E)
    gp_s = time.perf_counter() - t0
    y_E = np.asarray(task.y_test, np.uint8)

    rows = []
    for e in sorted(a.tests):
        # SGD's functions on the first e points
        sub, inv = np.unique(bits[:, :e], axis=0, return_inverse=True)
        c = np.bincount(inv.ravel(), weights=n_run, minlength=len(sub)).astype(int)
        order = np.argsort(-c)
        sub, c = sub[order], c[order]
        N = int(c.sum())
        # the GP posterior on the same points, sampled
        pats, pc = sample_sign_patterns(mean[:e], cov[:e, :e], rng=np.random.default_rng([0, m, e]),
                                        n_samples=a.gp_samples)
        p = pc / a.gp_samples
        expect5 = float(stats.binom.sf(4, N, p).sum())
        lookup = {pt.tobytes(): q for pt, q in zip(pats, p)}
        p_sgd_fns = np.array([lookup.get(s.astype(np.uint8).tobytes(), 0.0) for s in sub])
        rows.append(dict(
            dataset=a.dataset, S=m, E=e, width=a.width, runs=N, fitted=res.n_fitted,
            median_epochs=float(np.median(fit_ep)) if len(fit_ep) else float("nan"),
            sgd_distinct=len(sub), sgd_seen_ge5=int((c >= 5).sum()),
            sgd_seen_ge5_pb_resolvable=int(((c >= 5) & (p_sgd_fns >= 5 / N)).sum()),
            sgd_top_share=round(c[0] / N, 3),
            sgd_top_errors=int((sub[0] != y_E[:e]).sum()),
            gp_top_p=float(p[0]), gp_top100_mass=float(p[:100].sum()),
            gp_expected_ge5=round(expect5, 1),
            share_runs_pb_resolvable=round(float(c[p_sgd_fns >= 5 / N].sum() / N), 3),
            pb_of_sgd_top=float(p_sgd_fns[0]),
            sgd_s=round(sgd_s, 1), sgd_cpu_s=round(sgd_cpu, 1), gp_s=round(gp_s, 1),
            load=round(os.getloadavg()[0], 1)))
        _print_row(rows[-1])
    if a.out:
        append_csv(a.out, rows)
    return 0


def _print_row(row: dict) -> None:
    print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
          flush=True)

def _predictive(task, model, n_E):
    from bayes_sgd.gp import ep_posterior, ep_predictive, fcn_nngp_kernel_for

    m = task.m
    X = np.concatenate([task.x_train, task.x_test]).reshape(m + n_E, -1).astype(np.float64)
    K = fcn_nngp_kernel_for(model, X)
    st = ep_posterior(K[:m, :m], 2.0 * np.asarray(task.y_train, np.float64) - 1.0)
    return ep_predictive(K[:m, :m], K[:m, m:], K[m:, m:], st)


def gp_only(a) -> int:
    """P_B's repeats on the config's own E (each |E| a fresh draw, as ``reproduce`` makes it)."""
    from bayes_sgd.config import load_config
    from bayes_sgd.gp import sample_sign_patterns
    from bayes_sgd.models import build_model
    from bayes_sgd.tasks import build_task

    for e in sorted(a.tests):
        cfg = load_config(CONFIG, [f"task.train_size={a.train_size}", f"task.test_size={e}",
                                   *(FASHION if a.dataset == "fashion-mnist" else []), *a.set])
        task = build_task(cfg.task)
        mu, C = _predictive(task, build_model(cfg.model, task.input_shape), e)
        _, pc = sample_sign_patterns(mu, C, rng=np.random.default_rng(0), n_samples=a.gp_samples)
        p = pc / a.gp_samples
        print(f"dataset={a.dataset} S={task.m} E={e} gp_top_p={p[0]:.3g} "
              f"gp_top100_mass={p[:100].sum():.3g} gp_functions_ge_5e-3={int((p >= 5e-3).sum())} "
              f"gp_expected_ge5(N={'/'.join(map(str, a.gp_runs))})="
              + "/".join(f"{stats.binom.sf(4, N, p).sum():.1f}" for N in a.gp_runs),
              flush=True)
    return 0


def figure_draws(a) -> int:
    """SGD's and the GP's repeats on the figure's own S and E for every e, at nested run counts."""
    import dataclasses

    from bayes_sgd.config import load_config
    from bayes_sgd.counting import unpack_bits
    from bayes_sgd.gp import sample_sign_patterns
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import sgd_trainer_and_run_kwargs
    from bayes_sgd.tasks import build_task

    tests = sorted(set(a.tests))
    checkpoints = sorted(set(a.checkpoints or [a.runs]))
    if checkpoints[-1] > a.runs or checkpoints[0] < 1:
        raise SystemExit(f"--checkpoints: expected values in 1..--runs ({a.runs}), got {checkpoints}")
    base = [f"task.train_size={a.train_size}", f"model.widths=[{a.width}, {a.width}]",
            f"samplers.sgd.n_runs={a.runs}",
            *(FASHION if a.dataset == "fashion-mnist" else []), *a.set]
    cfgs = {e: load_config(CONFIG, [*base, f"task.test_size={e}"]) for e in tests}
    tasks = {e: build_task(c.task) for e, c in cfgs.items()}
    t_ref = tasks[tests[0]]
    for e, t in tasks.items():  # SGD trains on S alone: one training serves every E only if S is one
        if not (np.array_equal(t.x_train, t_ref.x_train) and np.array_equal(t.y_train, t_ref.y_train)):
            raise SystemExit(f"--figure-draws: S differs between |E| = {tests[0]} and {e} "
                             f"({a.dataset} draws S and E from one pool); use the nested pilot")
    cols = np.cumsum([0] + tests)  # network bits: E of the first e, then of the next, ...
    task = dataclasses.replace(t_ref, name=t_ref.name + "+figure-draws",
                               x_test=np.concatenate([tasks[e].x_test for e in tests]),
                               y_test=np.concatenate([tasks[e].y_test for e in tests]))
    cfg = cfgs[tests[0]]
    model = build_model(cfg.model, task.input_shape)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)

    gp = {}  # e -> (patterns as bytes -> P_B (sampled frequency), P_B array most probable first)
    t0 = time.perf_counter()
    for e in tests:
        mu, C = _predictive(tasks[e], model, e)
        pats, pc = sample_sign_patterns(mu, C, rng=np.random.default_rng(0), n_samples=a.gp_samples)
        p = pc / a.gp_samples
        gp[e] = ({pt.tobytes(): q for pt, q in zip(pats, p)}, p)
    gp_s = time.perf_counter() - t0

    res, start, saved, rows = None, 0, {}, []
    t0, c0 = time.perf_counter(), os.times()
    for N in checkpoints:
        block = trainer.run(range(start, N), **run_kw)
        start = N
        if res is None:
            res = block
        else:
            res.merge(block)
        sgd_s = time.perf_counter() - t0
        c1 = os.times()
        sgd_cpu = (c1.user + c1.children_user) - (c0.user + c0.children_user)
        keys, counts = res.counter.table()
        n_run = counts.sum(axis=1)
        saved[f"keys_{N}"], saved[f"counts_{N}"] = keys, n_run
        if a.save:  # after each checkpoint: a stopped pilot keeps what it counted
            np.savez(a.save, tests=np.array(tests), **saved)
        bits = unpack_bits(keys, int(cols[-1]))
        fit_ep = np.array([r[1] for r in res.records.values() if r[0]])
        for i, e in enumerate(tests):
            sub, inv = np.unique(bits[:, cols[i]:cols[i + 1]], axis=0, return_inverse=True)
            c = np.bincount(inv.ravel(), weights=n_run, minlength=len(sub)).astype(int)
            order = np.argsort(-c, kind="stable")
            sub, c = sub[order], c[order]
            lookup, p = gp[e]
            pb = np.array([lookup.get(s_.astype(np.uint8).tobytes(), 0.0) for s_ in sub])
            ge5 = c >= 5
            rows.append(dict(
                dataset=a.dataset, S=task.m, E=e, width=a.width, runs=N, fitted=res.n_fitted,
                median_epochs=float(np.median(fit_ep)) if len(fit_ep) else float("nan"),
                sgd_distinct=len(sub), sgd_seen_ge5=int(ge5.sum()),
                sgd_seen_ge5_pb_resolvable=int((ge5 & (pb >= 5 / N)).sum()),
                sgd_top_share=round(c[0] / N, 3), pb_of_sgd_top=float(pb[0]),
                gp_top_p=float(p[0]), gp_top100_mass=float(p[:100].sum()),
                gp_functions_ge_5_over_N=int((p >= 5 / N).sum()),
                gp_expected_ge5=round(float(stats.binom.sf(4, N, p).sum()), 1),
                pb_mass_on_sgd_ge5=round(float(pb[ge5].sum()), 3),
                sgd_s=round(sgd_s, 1), sgd_cpu_s=round(sgd_cpu, 1), gp_s=round(gp_s, 1),
                load=round(os.getloadavg()[0], 1)))
            _print_row(rows[-1])
    if a.out:
        append_csv(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
