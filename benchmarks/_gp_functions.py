"""Functions on E from a real SGD run of the held-out n = 7 task (cached for bench_gp_scoring)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

TARGET_SEED, TARGET_ONES, TRAIN_SIZE = 14, 32, 32
CACHE = Path(__file__).resolve().parent.parent / "results" / "bench_gp_scoring_functions.npz"


def target_string() -> str:
    """A random truth table of 128 inputs with exactly ``TARGET_ONES`` ones (seed 14)."""
    t = np.zeros(128, np.uint8)
    t[np.random.default_rng(TARGET_SEED).choice(128, TARGET_ONES, replace=False)] = 1
    return "".join(map(str, t))


def config(n_runs: int):
    from _baselines import QUICK_CONFIG
    from bayes_sgd.config import load_config

    return load_config(QUICK_CONFIG, [
        "task.kind=boolean", "task.n=7", f"task.target={target_string()}",
        f"task.train_size={TRAIN_SIZE}", "task.train_seed=0", "model.sigma_w=1.0",
        "model.sigma_b=1.0", "samplers.sgd.lr=0.01", "samplers.sgd.batch_size=8",
        "samplers.sgd.optimizer=sgd", "samplers.sgd.loss=bce", f"samplers.sgd.n_runs={n_runs}",
        "samplers.sgd.max_epochs=2000"])


def sgd_functions(n_runs: int, *, path: Path = CACHE) -> tuple[np.ndarray, np.ndarray, dict]:
    """(bits (n_f, |E|) uint8, counts, info): distinct functions found by ``n_runs`` SGD runs,
    most frequent first; read from ``path`` when it holds the same setting."""
    from bayes_sgd.counting import unpack_bits

    if path.exists():
        z = np.load(path)
        if int(z["n_runs"]) == n_runs and str(z["target"]) == target_string():
            return z["bits"], z["counts"], {"n_runs": n_runs, "cached": str(path),
                                             "sgd_s": float(z["sgd_s"])}
    from bayes_sgd.experiment import sgd_trainer_and_run_kwargs
    from bayes_sgd.models import build_model
    from bayes_sgd.tasks import build_task

    cfg = config(n_runs)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
    t0 = time.perf_counter()
    res = trainer.run(range(n_runs), **run_kw)
    sgd_s = time.perf_counter() - t0
    keys, counts = res.counter.table()
    bits = unpack_bits(keys, task.n_test).astype(np.uint8)
    tot = counts.sum(1)
    order = np.lexsort((np.arange(len(tot)), -tot))
    bits, tot = bits[order], tot[order]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, bits=bits, counts=tot, n_runs=n_runs, target=target_string(), sgd_s=sgd_s,
             n_fitted=res.n_fitted)
    tmp.replace(path)
    return bits, tot, {"n_runs": n_runs, "n_fitted": res.n_fitted, "sgd_s": sgd_s}


if __name__ == "__main__":
    import sys

    b, c, info = sgd_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
    print(b.shape, c[:10], info)
