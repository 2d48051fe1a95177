"""EP on image training sets: wall time and peak memory of ``ep_posterior`` at |S| = 1k, 5k (10k, 20k).

    .venv/bin/python benchmarks/bench_ep_scaling.py [--sizes 1000 5000] [--full] [--json OUT]
        [--blas-threads 2] [--precision mixed|float64|both] [--cold]

Setting (the paper's MNIST FCN prior): binarised MNIST (label >= 5 -> 1), the first |S| images
of a random permutation (seed 0) of the MNIST test split (10,000 images; the only split needed,
found via ``BAYES_SGD_MNIST_DIR`` or ``--data``), pixels in [0, 1]; analytic NNGP kernel of a
784-512-512-1 ReLU FCN, sigma_w = 1, sigma_b = 0.0357 (``fcn_nngp_kernel``, depth 2);
``ep_posterior(K, y)`` with its defaults (parallel EP above 256 points, one BLAS thread,
tol 1e-4). This is the one expensive step of the GP sampler's conditional mode (EP on S once).

Every size runs in its own subprocess, so peak memory is that size's alone:

* ``rss_peak_mb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end (the whole process,
  interpreter, numpy and the MNIST arrays included; ``rss_base_mb`` is the same just before the
  kernel is built, so ``rss_peak_mb - rss_base_mb`` is what the kernel and EP added);
* ``py_peak_mb``: ``tracemalloc`` peak of the EP call alone (numpy buffers; LAPACK workspace
  is not seen), for comparison with ``n^2 x 8 B`` (one dense float64 n x n matrix).

``--full`` adds |S| = 10,000 (all of the test split) and 20,000 (test + train split; skipped
with a message when the train split is missing).

Measured (2 shared cores, under the CPU lock, ``--full``; kernel s / EP s / sweeps / RSS peak):
|S| = 1,000: 0.05 s / 0.36 s / 13 / 155 MB; 5,000: 4.5 s / 26.4 s / 15 / 1.49 GB;
10,000: 20.1 s / 183 s / 15 / 6.33 GB (tracemalloc peak of EP alone 5.34 GB = 7 dense
n x n float64 matrices).  All converged; log10 P(S) = -131.4 / -404.5 / -616.0.

After the memory changes of issue 14 (EP holds K and one n x n work matrix; the kernel is
built in place by row blocks), measured 2026-12-01 with four other sessions' jobs on the 2
cores (load average ~20, so times are ~4x the idle ones above): |S| = 10,000: kernel 45.9 s,
EP 691.8 s, 15 sweeps, log10 P(S) = -616.0 (unchanged), RSS peak 1.92 GB (VmHWM; was 6.33 GB),
tracemalloc peak of EP alone 766 MB = one n x n matrix. |S| = 5,000 (before the last two
fixes): RSS peak 1.11 GB (was 1.49 GB). What bounds each size: memory, K plus one work matrix
(2 x 0.8 GB at 10,000; 2 x 3.2 GB at 20,000, which also needs the MNIST train split); time,
15 sweeps of one Cholesky and one triangular inverse (2n^3/3 flops each) on one BLAS thread.
Results print as a table and, with ``--json``, are written to a file.

Where the time goes (n = 3,000, one BLAS thread, load average ~17; ``ep_posterior(verbose=True)``
with timers): 16 Choleskys of B 9.5 s, 15 in-place triangular inverses 8.4 s, everything else
(site updates, K v products, the explicit-variance columns) < 0.5 s, of 19.8 s; the kernel
3.3 s. So the time is the number of sweeps times 2n^3/3 flops of LAPACK. Changes of issue 14
(item 2), both on by default:

* the cold start needs no factorisation (zero sites: the prior's marginals; bit-identical);
* warm start (``ep_posterior(warm_start=True)``, n >= 2048): EP on every other point
  (recursively) first, then the full EP from its sites, its starting marginals from the half's
  predictive. ``--cold`` runs every size both ways. Measured 2026-12-02, load average 16-19:
  |S| = 5,000: cold 180.7 s / 15 sweeps, warm 98.0 s / 9 full-size sweeps; a second pair
  113.8 s / 56.7 s wall, 34.7 s / 26.9 s EP CPU time: the wall ratios (1.8-2.0x) move with
  the load, the CPU-time ratio 1.29x is the one to trust; log10 P(S) = -404.5289 both
  (|Delta| = 1.3e-7); RSS peak unchanged (711 MB). |S| = 10,000,
  warm, one run only (the machine is shared): kernel 52.9 s, EP 861 s wall at nice 15 beside
  this session's tests (the cold 692 s above was under another load: wall times under load do
  not compare), 9 full-size sweeps, log10 P(S) = -615.9555 (-616.0 before), RSS peak 1.91 GB.
  The 90 s floor: ~140 s expected idle on one BLAS thread (183 s / 1.29), not met; with
  ``--blas-threads 2`` on idle cores (~1.8x) ~80 s, not measured here.

Measured idle, under the timing lock (2026-12-02 06:44-06:50 UTC, main at 1d9bdb0),
``--sizes 10000``: ``--blas-threads 2`` kernel 9.9 s, EP 112.7 s (209 s CPU), 9 sweeps,
log10 P(S) = -615.9555, RSS peak 1.90 GB; ``--blas-threads 1`` kernel 7.4 s, EP 188.5 s
(187 s CPU), the same sweeps and value, 1.90 GB. Where the 112.7 s go (timers around the
LAPACK calls, two threads, a separate run in the lock at 07:15 UTC: EP 110.8 s): the Cholesky of K for the
jitter policy 5.8 s; 46 Choleskys of B 48.0 s and 42 triangular inverses 42.4 s (77-83
GFLOP/s on the two cores), of which the 9 full-size sweeps take 8.6-9.9 s each, 79.5 s in
all; the warm start (EP on 5,000, 2,500, ... points) and everything else (site updates,
K v products, the elementwise passes, the rebuilt factor ~4.4 s) ~25 s by difference. Sweep residuals:
0.96, 0.30, 0.034, 0.0048, 0.0061 (damping halved), 0.0019, 5.4e-4, 3.4e-4, 5.6e-5.
So EP at 10,000 is 9 sweeps of 2n^3/3 flops of LAPACK at ~80 GFLOP/s plus the warm start:
the floor of 90 s would need fewer sweeps (a different damping schedule, i.e. a different
iteration, not done here) or a faster LAPACK. What bounds each size: 1,000 and 5,000 time
only (< 30 s); 10,000: time (LAPACK flops), memory 1.9 GB of the 2.5 GB allowed (K + one work
matrix, 0.8 GB each); 20,000: the data (the MNIST train split, absent here: skipped), then
memory (2 x 3.2 GB + ~0.3 GB, 6.7 GB: fits 24 GB only with the other sessions' jobs small)
and time (8x the flops of 10,000: ~15 min on both cores, beyond one timing slot here).

Issue 14's fourth round (EP keeps the last sweep's L^-1, no factor rebuilt at the end), under
the lock 2026-12-02 10:43-10:49 UTC, ``--sizes 10000 --blas-threads 2``, this code / main /
this code: EP 108.4 s / 107.9 s / 100.4 s (199 / 202 / 190 CPU-s), 9 sweeps, log10 P(S) =
-615.9555 each, RSS peak 1.90 GB. One full-size Cholesky less (11 -> 10 with the jitter one);
the gain (~4 s) is within the spread. The iteration's flops, 7.3e12 (9 x 2n^3/3 + the warm
start's levels + the jitter Cholesky + the warm start's predictive), take 86-92 s at the
80-85 GFLOP/s OpenBLAS's dpotrf/dtrtri reach on the two cores (dgemm: 97.6): the 90 s floor
needs fewer sweeps (another damping schedule) or another jitter policy.

Issue 14's fifth round: mixed precision (``ep_posterior(precision="mixed")``, the default; the
``f32`` column counts the float32 sweeps). Sweeps whose previous residual is >= 1e-3 factorise
and invert B in float32 (spotrf + strtri of an n = 10,000 SPD test matrix: 4.0-4.3 s against
7.8-8.7 s for dpotrf + dtrtri, under the lock on two threads), the mean refined once in float64,
variances below 1 - (B^-1)_ii = 1e-4 from the explicit form; the sweeps that decide convergence
are float64. Under the lock, ``--sizes 10000 --blas-threads 2 --precision both`` (float64 then
mixed in one slot), 2026-12-02 15:48-16:35 UTC, EP s float64 / mixed (CPU-s): the committed
code 99.0 / 69.8 (185 / 129), 107.3 / 74.3 (203 / 138), 114.6 / 73.0 (214 / 135);
earlier versions of the change (explicit form below 1e-3: 852 columns at 10,000, ~1.5 s a
sweep) 101.6 / 79.7, 95.8 / 79.5, 96.6 / 75.2, 96.3 / 75.9. Every run: 9 sweeps both ways (7
of them float32), the same residual path to two digits (0.96, 0.30, 0.034, 0.0048, 0.0061,
0.0019, 5.4e-4, 3.4e-4, 5.6e-5), log10 P(S) = -615.9555008508 (float64) and -615.9555008364
(mixed; -615.955500837 with the earlier versions): |Delta| = 1.4e-8; peak RSS 1.90 GB both (the
float64 sweeps' work matrix; a float32 one is half). |S| = 5,000 (same slot as 107.3 / 74.3):
16.5 / 13.1 s, 9 sweeps, log10 P(S) -404.5288695293 / -404.5288695249, 705 / 710 MB.
The float64 path is bit for bit the code before. Where the 69.8 s go: the jitter policy's
float64 Cholesky of K plus the warm start (its levels mixed too) 20.0 s (float64: 24.7 s), 7
float32 sweeps 4.5-5.1 s each (float64 sweeps: 7.8-9.3 s), 2 float64 sweeps 8.9 and 8.2 s. The
jitter Cholesky stays float64: in float32 it can succeed where float64's fails (and the
reverse), which would change the jitter decision.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIGMA_W, SIGMA_B, DEPTH = 1.0, 0.0357, 2


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def worker(n: int, data: str | None, warm_start: bool = True,
           blas_threads: int | None = 1, precision: str = "mixed") -> dict:
    import tracemalloc

    import numpy as np

    from bayes_sgd.datasets import load_mnist
    from bayes_sgd.gp import ep_posterior, fcn_nngp_kernel

    images, labels = load_mnist("test", path=data)
    if n > len(images):
        # |S| = 20,000 needs the training split as well (test first, then train)
        try:
            tr_images, tr_labels = load_mnist("train", path=data)
        except (FileNotFoundError, OSError, ValueError) as e:
            return {"n": n, "skipped": f"needs the MNIST train split too ({e})"}
        images = np.concatenate([images, tr_images])
        labels = np.concatenate([labels, tr_labels])
    idx = np.random.default_rng(0).permutation(len(images))[:n]
    X = images[idx].reshape(n, -1).astype(np.float64) / 255.0
    y = np.where(labels[idx] >= 5, 1.0, -1.0)
    rss_base = _rss_mb()
    t0 = time.perf_counter()
    K = fcn_nngp_kernel(X, depth=DEPTH, sigma_w=SIGMA_W, sigma_b=SIGMA_B, activation="relu")
    t_kernel = time.perf_counter() - t0
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    st = ep_posterior(K, y, warm_start=warm_start, blas_threads=blas_threads,
                      precision=precision)
    t_ep, cpu_ep = time.perf_counter() - t0, time.process_time() - c0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n": n, "warm_start": warm_start, "blas_threads": blas_threads,
            "precision": precision, "kernel_s": t_kernel,
            "ep_s": t_ep, "ep_cpu_s": cpu_ep, "ep_sweeps": int(st.n_iter),
            "converged": bool(st.converged), "variant": st.variant,
            "float32_sweeps": sum(h[5] == "float32" for h in st.history),
            "residuals": [h[2] for h in st.history],
            # seconds from the full-size EP's start (after the jitter Cholesky and the warm
            # start) to the end of each sweep
            "sweep_end_s": [h[4] for h in st.history],
            "log10_P_S": float(st.log_Z / np.log(10.0)), "jitter": float(st.jitter),
            "rss_base_mb": rss_base, "rss_peak_mb": _rss_mb(), "vm_hwm_mb": _vm_hwm_mb(),
            "py_peak_mb": py_peak / 2**20,
            "dense_nxn_mb": n * n * 8 / 2**20, "cpu_count": os.cpu_count()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--full", action="store_true",
                    help="also |S| = 10,000 and 20,000 (20,000 needs the MNIST train split)")
    ap.add_argument("--data", help="folder of the MNIST test split (default: BAYES_SGD_MNIST_DIR)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--cold", action="store_true",
                    help="also run every size without the warm start (the path before it; "
                         "prints the EP time ratio cold / warm)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for EP (default 1: ep_posterior's default, right on "
                         "shared cores; 2 uses both cores of an idle machine)")
    ap.add_argument("--precision", choices=["mixed", "float64", "both"], default="mixed",
                    help="ep_posterior(precision=...): 'mixed' (the default: early sweeps in "
                         "float32), 'float64' (every sweep float64: the path before), or 'both' "
                         "(float64 then mixed per size, in one slot; prints the ratio)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-cold", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, warm_start=not args.worker_cold,
                                blas_threads=args.blas_threads, precision=args.precision)))
        return 0
    sizes = sorted(set(args.sizes + ([10_000, 20_000] if args.full else [])))
    print(f"EP scaling on binarised MNIST, analytic NNGP of FCN 784-512-512-1 relu "
          f"(sigma_w={SIGMA_W}, sigma_b={SIGMA_B}); one subprocess per size", flush=True)
    head = (f"{'|S|':>6} {'start':>5} {'prec':>7} {'kernel s':>9} {'EP s':>8} {'sweeps':>6} "
            f"{'f32':>3} {'conv':>5} "
            f"{'log10 P(S)':>13} {'RSS peak MB':>11} {'(+ over base)':>13} {'py peak MB':>10} "
            f"{'n^2*8B MB':>9} "
            f"{'EP CPU s':>8}")
    print(head, flush=True)
    rows = []
    for n in sizes:
        precs = ["float64", "mixed"] if args.precision == "both" else [args.precision]
        runs = [(cold, p) for cold in ([True, False] if args.cold else [False]) for p in precs]
        for cold, prec in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n),
                   "--blas-threads", str(args.blas_threads), "--precision", prec] + (
                ["--worker-cold"] if cold else [])
            if args.data:
                cmd += ["--data", args.data]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"|S| = {n}: worker failed:\n{r.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append(row)
            if "skipped" in row:
                print(f"{n:>6} skipped: {row['skipped']}", flush=True)
                break
            print(f"{n:>6} {'cold' if cold else 'warm':>5} {prec:>7} {row['kernel_s']:>9.2f} "
                  f"{row['ep_s']:>8.1f} {row['ep_sweeps']:>6} {row['float32_sweeps']:>3} "
                  f"{str(row['converged']):>5} "
                  f"{row['log10_P_S']:>13.7f} {row['rss_peak_mb']:>11.0f} "
                  f"{row['rss_peak_mb'] - row['rss_base_mb']:>13.0f} {row['py_peak_mb']:>10.0f} "
                  f"{row['dense_nxn_mb']:>9.0f} {row['ep_cpu_s']:>8.1f}", flush=True)
            if args.precision == "both" and prec == "mixed":
                c = rows[-2]
                print(f"{'':>6} EP time float64 / mixed = {c['ep_s'] / row['ep_s']:.2f}x (CPU "
                      f"time {c['ep_cpu_s'] / row['ep_cpu_s']:.2f}x); |d log10 P(S)| = "
                      f"{abs(c['log10_P_S'] - row['log10_P_S']):.1e}", flush=True)
            if not cold and args.cold and prec == precs[-1]:
                c = rows[-1 - len(precs)]
                print(f"{'':>6} EP time cold / warm = {c['ep_s'] / row['ep_s']:.2f}x (CPU time "
                      f"{c['ep_cpu_s'] / row['ep_cpu_s']:.2f}x); "
                      f"|d log10 P(S)| = {abs(c['log10_P_S'] - row['log10_P_S']):.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setting": {"dataset": "mnist test split, label >= 5", "depth": DEPTH,
                                   "sigma_w": SIGMA_W, "sigma_b": SIGMA_B, "activation": "relu"},
                       "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
