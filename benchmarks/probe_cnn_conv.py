"""Probe: one paper-layout CNN's training step and fit check per convolution path and XLA flag.

    python benchmarks/probe_cnn_conv.py [--channels 32] [--reps 5] [--flags "--xla_..."]...

Each flag set runs in a fresh process (XLA reads ``XLA_FLAGS`` once, when its CPU backend
starts), on ONE JAX CPU device (``BAYES_SGD_CPU_DEVICES=1``), and times, best of ``--reps``:
  * step: a jitted ``value_and_grad`` of the BCE loss of one network on 32 images plus the
    Adam update (the SGD sampler's training step);
  * fit: the forward pass on 1,000 images in chunks of 128 under ``lax.map`` (the sampler's
    fit check, ``FIT_CHUNK``);
for ``CNN.conv`` "im2col" (the CPU default outside the SGD trainer), "xla"
(``lax.conv_general_dilated``, NHWC/HWIO) and "nhwc" (the same with its backward convolutions
written in NHWC/HWIO form; the SGD trainer's choice for CNNs on CPU).  These jitted functions
have no loop, so XLA canonicalises "xla"'s backward convolutions itself and the two time
alike; inside the trainer's epoch loop it does not (see ``models._cnn._conv_nhwc``).  Outputs and gradients of every variant are compared with im2col's under no flag
(saved by the first process): max |difference| relative to the largest magnitude.
Inputs are uniform on [0, 1) (timing does not depend on the values; ReLU has no
data-dependent cost), labels random bits, seed fixed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial

FLAG_SETS = [
    "",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_experimental_onednn_custom_call=true --xla_cpu_use_onednn=true",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_experimental_xnn_fusion_type=dot",
    "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
    "--xla_cpu_experimental_ynn_fusion_type=individual_convolution,individual_dot",
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_cpu_experimental_onednn_fusion_type=dot",
]


def child(args) -> dict:
    os.environ["BAYES_SGD_CPU_DEVICES"] = "1"
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from bayes_sgd.models import CNN

    rng = np.random.default_rng(0)
    x_s = jnp.asarray(rng.random((1000, 28, 28, 1), np.float32))
    y_s = jnp.asarray(rng.integers(0, 2, 1000).astype(np.float32))
    out = {"flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__}
    opt = optax.adam(1e-3)
    for impl in args.impls:
        model = CNN.paper((28, 28, 1), filters=args.channels, conv=impl, sigma_b=0.0357)
        params = jax.tree_util.tree_map(lambda a: a[0], model.init(key=jax.random.key(1), n=1))
        o_state = opt.init(params)

        def loss(p, xb, yb):
            return optax.sigmoid_binary_cross_entropy(model.apply(p, xb), yb).mean()

        jit = partial(jax.jit, compiler_options=args.jit_options) if args.jit_options else jax.jit

        @jit
        def step(p, o, xb, yb):
            val, g = jax.value_and_grad(loss)(p, xb, yb)
            upd, o = opt.update(g, o, p)
            return optax.apply_updates(p, upd), o, val, g

        @jit
        def fit(p, xs):
            return jax.lax.map(lambda xb: model.apply(p, xb), xs.reshape(-1, 125, 28, 28, 1)
                               if args.chunk == 125 else xs).reshape(-1)

        xb, yb = x_s[:32], y_s[:32]
        xs = x_s if args.chunk == 125 else jnp.concatenate(
            [x_s, x_s[:24]]).reshape(8, 128, 28, 28, 1)
        t = time.perf_counter()
        r = step(params, o_state, xb, yb)
        jax.block_until_ready(r)
        f = fit(params, xs)
        jax.block_until_ready(f)
        compile_s = time.perf_counter() - t
        ts, tf = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            jax.block_until_ready(step(params, o_state, xb, yb))
            ts.append(time.perf_counter() - t)
            t = time.perf_counter()
            jax.block_until_ready(fit(params, xs))
            tf.append(time.perf_counter() - t)
        g = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(r[3])])
        out[impl] = {"step_ms": 1e3 * min(ts), "fit_ms": 1e3 * min(tf),
                     "step_med_ms": 1e3 * float(np.median(ts)),
                     "fit_med_ms": 1e3 * float(np.median(tf)), "compile_s": compile_s,
                     "loss": float(r[2]), "grad": g.tolist(),
                     "fit_out": np.asarray(f)[:1000].tolist()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=128, help="fit-check rows per chunk")
    ap.add_argument("--impls", default="im2col,xla,nhwc")
    ap.add_argument("--flags", action="append", help="flag sets (default: a built-in list)")
    ap.add_argument("--jit-options", default="",
                    help='compiler options of the jitted step and fit check, as JSON')
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.impls = args.impls.split(",")
    if args.child:
        args.jit_options = json.loads(args.jit_options) if args.jit_options else None
    if args.child:
        print(json.dumps(child(args)))
        return 0
    import numpy as np

    ref = None
    for flags in (args.flags or FLAG_SETS):
        env = dict(os.environ, XLA_FLAGS=flags)
        cmd = [sys.executable, __file__, "--child", "--channels", str(args.channels),
               "--reps", str(args.reps), "--chunk", str(args.chunk),
               "--impls", ",".join(args.impls), "--jit-options", args.jit_options]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode:
            print(f"[{flags or 'no flag'}] failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        res = json.loads(p.stdout.strip().splitlines()[-1])
        warn = [ln for ln in p.stderr.splitlines() if "W" in ln[:2] or "nknown" in ln][:2]
        for impl in args.impls:
            r = res[impl]
            g, f = np.asarray(r["grad"]), np.asarray(r["fit_out"])
            if ref is None:
                ref = (g, f)
            dg = np.abs(g - ref[0]).max() / np.abs(ref[0]).max()
            df = np.abs(f - ref[1]).max() / np.abs(ref[1]).max()
            print(f"[{flags or 'no flag'}{' jit ' + args.jit_options if args.jit_options else ''}] {impl:6s}: step {r['step_ms']:7.1f} ms "
                  f"(median {r['step_med_ms']:7.1f}), fit 1,000 {r['fit_ms']:7.1f} ms "
                  f"(median {r['fit_med_ms']:7.1f}), compile {r['compile_s']:.1f} s; "
                  f"rel. diff vs im2col/no flag: grad {dg:.1e}, outputs {df:.1e}", flush=True)
        if warn:
            print("   stderr:", " | ".join(w[:160] for w in warn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
