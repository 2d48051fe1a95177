"""Rejection sampling of P_B(f|S) at |S| = 32: the package vs a one-network-at-a-time numpy loop.

    .venv/bin/python benchmarks/bench_rejection.py [--seconds 3] [--rounds 5] [--chunk 0]

Setting: n = 7 (128 inputs), target and4, |S| = 32 (train_seed 0), FCN 7-40-40-1 ReLU,
sigma_w = sigma_b = 1.  The package path is the runner's (``make_chunk_fn`` with
``record_prior=False`` + ``run_rejection_chunks`` over blocks of 8 chunks, as
``bayes_sgd.experiment`` calls them); the baseline is ``_baselines.numpy_rejection_loop``: the
one-network-at-a-time numpy loop of ``bench_random_init.py`` (draw, forward on all 128 inputs,
threshold) keeping the networks that fit S and counting their packed functions on E.  With
``--baseline s-first`` the loop evaluates S first and E only for networks that fit, as the
package does (a stricter comparison, reported for information).  Both run in the
same process, alternating in rounds of ``--seconds`` each, so they see the same machine load;
the ratio of their rates is checked against the floor of 8x.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baselines import (QUICK_CONFIG, banner, chunk_rounds, interleave, numpy_rejection_loop,  # noqa: E402
                        timing_parser, verdict)

FLOOR = 8.0


def main(argv=None) -> int:
    ap = timing_parser(__doc__)
    ap.add_argument("--train-size", type=int, default=32)
    ap.add_argument("--baseline", choices=("full", "s-first"), default="full",
                    help="numpy loop evaluating all inputs (default) or S first")
    ap.add_argument("--output-draws", type=int, default=1,
                    help="output layers per hidden draw (> 1: the rate is scaled by the "
                         "measured ESS efficiency)")
    args = ap.parse_args(argv)

    import jax

    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import (EvalLayout, make_chunk_fn,
                                    run_rejection_chunks, stream_key)
    from bayes_sgd.counting import FunctionCounter
    from bayes_sgd.samplers import RejectionResult, rejection_chunk_size
    from bayes_sgd.tasks import build_task

    cfg = load_config(QUICK_CONFIG, [f"task.train_size={args.train_size}"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    k = args.output_draws
    chunk = args.chunk or rejection_chunk_size(model, len(layout.x), k)
    banner("rejection sampling of P_B(f|S)", {
        "task": f"n={cfg.task.n}, target={cfg.task.target}, |S|={task.m}, |E|={task.n_test}",
        "model": f"FCN {model.in_dim}-{'-'.join(map(str, model.widths))}-1 "
                 f"{model.activation}, sigma_w={model.sigma_w}, sigma_b={model.sigma_b}",
        "package": f"make_chunk_fn(record_prior=False) + run_rejection_chunks, chunk {chunk}, "
                   f"blocks of 8 chunks, jax {jax.__version__} on {jax.devices()}",
        "baseline": "numpy loop, one network at a time (np.random.default_rng; "
                    + ("forward on all 128 inputs, keep if it fits S)" if args.baseline == "full"
                       else "S first, E only if it fits)"),
        "timing": f"{args.rounds} rounds x {args.seconds:g} s per side, alternating",
    })
    fn = make_chunk_fn(model, layout, task.y_train, chunk, record_prior=False, output_draws=k)
    stream = stream_key(cfg.seed, "rejection")
    kw = dict(chunk_size=chunk, n_samples=1 << 60, n_test=task.n_test, n_table=None,
              devices=jax.devices())
    # compile outside the timing, on every device: the S executable and the E executable
    fn.warm(jax.devices())
    c = 0
    while c < 1024:
        warm = run_rejection_chunks(fn, stream, range(c, c + 8), **kw)
        c += 8
        if warm.n_accepted:
            break
    state = {"next": c, "accepted": 0, "n": 0,
             "res": RejectionResult(FunctionCounter(task.n_test), None, output_draws=k)}

    def merge(part):
        state["accepted"] += part.n_accepted
        state["res"].merge(part)

    def package(seconds):
        n, dt = chunk_rounds(lambda chunks: run_rejection_chunks(fn, stream, chunks, **kw),
                             state, seconds, merge)
        state["n"] += n
        return n, dt

    base = {"accepted": 0, "n": 0, "round": 0}

    def baseline(seconds):
        base["round"] += 1
        n, dt, counter = numpy_rejection_loop(layout.x, layout.s_idx, layout.e_idx, task.y_train,
                                              seconds, seed=base["round"],
                                              s_first=args.baseline == "s-first")
        base["n"] += n
        base["accepted"] += counter.total
        return n, dt

    rates = interleave({"package": package, "baseline": baseline},
                       rounds=args.rounds, seconds=args.seconds)
    print(f"package : {rates['package']:>10,.0f} samples/s  "
          f"(acceptance {state['accepted']}/{state['n']:,} = {state['accepted'] / state['n']:.1e})")
    print(f"baseline: {rates['baseline']:>10,.0f} samples/s  "
          f"(acceptance {base['accepted']}/{base['n']:,} = {base['accepted'] / base['n']:.1e})")
    ratio = rates["package"] / rates["baseline"]
    if k > 1:  # dependent draws: count effective samples (the loop's draws are independent)
        ess = state["res"].effective_sample_sizes()
        print(f"output_draws {k}: ESS of the acceptance {ess['acceptance']:,.0f} of "
              f"{state['n']:,} samples, posterior ESS >= {ess['posterior_lower']:,.1f} of "
              f"{state['accepted']} accepted ({state['res'].n_groups:,} hidden draws): "
              f"efficiency {ess['efficiency']:.3f}; effective rate "
              f"{rates['package'] * ess['efficiency']:,.0f}/s")
        ratio *= ess["efficiency"]
    ok = verdict(f"rejection |S|={task.m} vs {args.baseline} numpy loop"
                 + (f" (effective samples, output_draws {k})" if k > 1 else ""), ratio, FLOOR)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
