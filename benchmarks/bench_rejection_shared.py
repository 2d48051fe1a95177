"""One rejection pass for the paper's seven n = 7 targets vs the pass of one target.

    .venv/bin/python benchmarks/bench_rejection_shared.py [--seconds 20] [--rounds 5] [--chunk 0]

Setting: ``experiments/paper_targets_n7.toml`` (FCN 7-40-40-1 ReLU, sigma_w = sigma_b = 1, all
128 inputs, output_draws 64, the automatic chunk size) with the authors' seven targets and
their S (``reproduce.PAPER_TARGETS_N7``: targets 0-5 on one S of 32 inputs, target 6 on
another).  Baseline: the pass of one target (``--single``, default t4) as each run samples it
on its own (``make_chunk_fn`` + ``run_rejection_chunks``, blocks of 8 chunks).  Package: the
shared pass (``make_shared_chunk_fn`` + ``run_shared_rejection_chunks``), which counts every
target on each network drawn.  Both run in one process, alternating rounds of ``--seconds``,
on fresh chunks.  Reported: prior samples per second of each, their ratio, the speed-up for the
seven targets (7 x the ratio: the separate passes draw 7 x as many networks) and the projected
rejection time of the seven-target figure at 10^9 samples a target.  Floor: the speed-up
must be >= 2x.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baselines import banner, interleave, timing_parser, verdict  # noqa: E402

FLOOR = 2.0


def main(argv=None) -> int:
    ap = timing_parser(__doc__)
    ap.add_argument("--single", default="t4", help="the one target of the baseline pass")
    ap.add_argument("--samples", type=float, default=1e9, help="samples a target, projection")
    args = ap.parse_args(argv)

    import time

    import jax

    from bayes_sgd import reproduce
    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import (EvalLayout, make_chunk_fn, make_shared_chunk_fn,
                                    rejection_chunk_size, run_rejection_chunks,
                                    run_shared_rejection_chunks, stream_key)
    from bayes_sgd.tasks import build_task

    path = reproduce.config_path(reproduce.FIGURES["targets_n7"], "paper")
    names = list(reproduce.PAPER_TARGETS_N7)
    tasks = {}
    for n, (t, m, _) in reproduce.PAPER_TARGETS_N7.items():
        cfg = load_config(str(path), [f"task.target={t}", f"task.train_mask={m}"])
        tasks[n] = build_task(cfg.task)
    rc = cfg.samplers.rejection
    model = build_model(cfg.model, tasks[names[0]].input_shape)
    layouts = {n: EvalLayout.for_task(t) for n, t in tasks.items()}
    k = rc.output_draws
    chunk = args.chunk or rejection_chunk_size(model, len(layouts[names[0]].x), k)
    union = len(set().union(*(set(l.s_idx.tolist()) for l in layouts.values())))
    banner("rejection: one shared pass for the seven paper targets vs one target's pass", {
        "task": f"n=7, all 128 inputs, 7 targets, |S|=32 each, |union of S|={union}",
        "model": f"FCN 7-{'-'.join(map(str, model.widths))}-1, output_draws {k}, chunk {chunk}",
        "baseline": f"target {args.single} alone: make_chunk_fn + run_rejection_chunks",
        "package": "make_shared_chunk_fn + run_shared_rejection_chunks",
        "timing": f"{args.rounds} rounds x {args.seconds:g} s per side, alternating, "
                  f"jax {jax.__version__} on {jax.devices()}",
    })
    devices = jax.devices()
    stream = stream_key(cfg.seed, "rejection")
    one = layouts[args.single]
    fn1 = make_chunk_fn(model, one, tasks[args.single].y_train, chunk, False, output_draws=k)
    fn7 = make_shared_chunk_fn(model, one.x, [(layouts[n].s_idx, tasks[n].y_train) for n in names],
                               chunk, False, output_draws=k)
    kw = dict(chunk_size=chunk, n_samples=1 << 60, n_table=None, devices=devices)
    e_idx = [layouts[n].e_idx for n in names]
    t0 = time.perf_counter()
    fn1.warm(devices)
    fn7.warm(devices)
    state = {"next": 0, "acc1": 0, "n1": 0, "acc7": [0] * len(names), "n7": 0}

    def timed(run_block, count):
        """A side of ``interleave``: blocks of 8 fresh chunks for ``seconds`` (or ``blocks``)."""
        def side(seconds, blocks=0):
            t = time.perf_counter()
            n = 0
            while time.perf_counter() - t < seconds or blocks > 0:
                blocks -= 1
                c = state["next"]
                state["next"] += 8
                n += run_block(range(c, c + 8))
            state[count] += n
            return n, time.perf_counter() - t
        return side

    def block_single(cs):
        part = run_rejection_chunks(fn1, stream, cs, n_test=tasks[args.single].n_test, **kw)
        state["acc1"] += part.n_accepted
        return part.n_samples

    def block_shared(cs):
        parts = run_shared_rejection_chunks(fn7, stream, cs, e_idx=e_idx, **kw)
        state["acc7"] = [a + p.n_accepted for a, p in zip(state["acc7"], parts)]
        return parts[0].n_samples

    single, shared = timed(block_single, "n1"), timed(block_shared, "n7")

    # warm-up outside the timing: compile the E / table executables for the usual numbers of
    # fits (and, with output_draws 1, the gathering one once its size has settled)
    single(0.0, blocks=2)
    sizes = [-1, -2]
    while sizes[-1] != sizes[-2] or len(sizes) < 5:
        shared(0.0, blocks=1)
        sizes.append(fn7.gather_size)
    print(f"compile + warm-up: {time.perf_counter() - t0:.0f} s (gather size {fn7.gather_size})")
    rates = interleave({"single": single, "shared": shared}, rounds=args.rounds, seconds=args.seconds)
    r1, r7 = rates["single"], rates["shared"]
    print(f"one target ({args.single}) : {r1:>12,.0f} samples/s  (accepted {state['acc1']} of "
          f"{state['n1']:,})")
    print(f"shared, {len(names)} targets : {r7:>12,.0f} samples/s  (accepted "
          + ", ".join(f"{n} {a}" for n, a in zip(names, state["acc7"])) + f" of {state['n7']:,})")
    ratio = r7 / r1
    speedup = len(names) * ratio
    print(f"rate ratio shared / one target: {ratio:.2f}; speed-up for {len(names)} targets: "
          f"{speedup:.2f}x")
    print(f"projected rejection time at {args.samples:.0e} samples a target: separate "
          f"{len(names) * args.samples / r1 / 60:.1f} min, shared {args.samples / r7 / 60:.1f} min")
    ok = verdict(f"shared rejection, {len(names)} targets vs {len(names)} separate passes",
                 speedup, FLOOR)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
