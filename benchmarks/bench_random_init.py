"""Random-init sampling of whole truth tables (the prior P(f), ``record_prior``): the package vs a
one-network-at-a-time numpy loop.

    .venv/bin/python benchmarks/bench_random_init.py [--seconds 3] [--rounds 5] [--chunk 0]

Setting: n = 7 (all 128 inputs), FCN 7-40-40-1 ReLU, sigma_w = sigma_b = 1.  The package path is
the runner's with ``record_prior = true`` (``make_chunk_fn(record_prior=True)`` +
``run_rejection_chunks`` over blocks of 8 chunks, counting every table exactly in a
``FunctionCounter``); the baseline is ``_baselines.numpy_prior_loop`` (``np.random.default_rng``,
draw W1, b1, W2, b2, W3, b3, forward on the 128 x 7 inputs, threshold at 0, ``np.packbits``,
counted in the same ``FunctionCounter``).  Both run in the same process, alternating in rounds
of ``--seconds`` each; the ratio of their rates is checked against the floor of 4x.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baselines import (QUICK_CONFIG, banner, chunk_rounds, interleave, numpy_prior_loop,  # noqa: E402
                        timing_parser, verdict)

FLOOR = 4.0


def main(argv=None) -> int:
    ap = timing_parser(__doc__)
    args = ap.parse_args(argv)

    import jax

    from bayes_sgd.config import load_config
    from bayes_sgd.models import build_model
    from bayes_sgd.samplers import (EvalLayout, default_chunk_size, make_chunk_fn,
                                    run_rejection_chunks, stream_key)
    from bayes_sgd.tasks import build_task

    cfg = load_config(QUICK_CONFIG, ["samplers.rejection.record_prior=true"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    chunk = args.chunk or default_chunk_size(model, len(layout.x))
    banner("random-init sampling of whole truth tables (prior P(f))", {
        "task": f"n={cfg.task.n}: {len(layout.x)} inputs (table), target={cfg.task.target}, "
                f"|S|={task.m} (fit also recorded)",
        "model": f"FCN {model.in_dim}-{'-'.join(map(str, model.widths))}-1 "
                 f"{model.activation}, sigma_w={model.sigma_w}, sigma_b={model.sigma_b}",
        "package": f"make_chunk_fn(record_prior=True) + run_rejection_chunks, chunk {chunk}, "
                   f"blocks of 8 chunks, jax {jax.__version__} on {jax.devices()}",
        "baseline": "numpy loop, one network at a time (np.random.default_rng, forward on "
                    "128x7, threshold, packbits; same FunctionCounter)",
        "timing": f"{args.rounds} rounds x {args.seconds:g} s per side, alternating",
    })
    fn = make_chunk_fn(model, layout, task.y_train, chunk, record_prior=True)
    stream = stream_key(cfg.seed, "rejection")
    kw = dict(chunk_size=chunk, n_samples=1 << 60, n_test=task.n_test, n_table=len(layout.x),
              devices=jax.devices())
    fn.warm(jax.devices())  # compile outside the timing, on every device
    state = {"next": 8, "functions": 0}

    def package(seconds):
        return chunk_rounds(lambda chunks: run_rejection_chunks(fn, stream, chunks, **kw),
                            state, seconds)

    base = {"round": 0}

    def baseline(seconds):
        base["round"] += 1
        n, dt, _ = numpy_prior_loop(layout.x, seconds, widths=model.widths,
                                    sigma_w=model.sigma_w, sigma_b=model.sigma_b,
                                    seed=base["round"])
        return n, dt

    rates = interleave({"package": package, "baseline": baseline},
                       rounds=args.rounds, seconds=args.seconds)
    print(f"package : {rates['package']:>10,.0f} tables/s")
    print(f"baseline: {rates['baseline']:>10,.0f} tables/s")
    ok = verdict("random-init sampling (prior)", rates["package"] / rates["baseline"], FLOOR)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
