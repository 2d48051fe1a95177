"""Several processes or machines: rejection chunks and SGD run ids on Dask workers.

``bayes-sgd run --scheduler tcp://HOST:8786`` (or ``local:N`` for a ``LocalCluster`` of N
single-threaded worker processes on this machine) sends blocks of work to the workers of a
Dask distributed scheduler and merges what comes back:

* rejection sampling: blocks of chunk indices.  A worker rebuilds the task and the model from
  the config, draws chunk ``c`` from ``fold_in(stream, c)`` exactly as a single process would,
  and returns the exact counts of its chunks; the merged counts equal those of a single-process
  run with the same seed and chunk size, whatever the number of workers or the order in which
  blocks finish (counts are merged exactly; halves follow chunk parity).
* SGD: blocks of run ids.  Run ``r``'s random numbers depend on ``r`` alone and the slot count
  is fixed by the coordinator, so the merged records and counts equal a single-process run's.

Workers need the same ``bayes-sgd`` (and JAX) installed, and each keeps its compiled
executables between tasks (one compile per worker and config).  Within a worker, chunks go
round-robin to ``jax.devices()``, as in a single process.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from functools import lru_cache

from .counting import FunctionCounter

REJECTION_BLOCK = 32  # chunks per task (about a second of work on one CPU core at n = 7)


@contextmanager
def _client(scheduler):
    """A ``distributed.Client`` for an address, ``local[:N]``, or an existing Client/cluster."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, str) and (scheduler == "local" or scheduler.startswith("local:")):
        n = int(scheduler.split(":", 1)[1]) if ":" in scheduler else None
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    with Client(scheduler) as client:
        yield client


@lru_cache(maxsize=4)
def _rejection_setup(cfg_json: str, chunk_size: int):
    import jax  # noqa: F401  (imported on the worker)

    from .config import config_from_dict
    from .models import build_model
    from .samplers._common import EvalLayout, stream_key
    from .samplers._rejection import make_chunk_fn
    from .tasks import build_task

    cfg = config_from_dict(json.loads(cfg_json))
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    rc = cfg.samplers.rejection
    n_table = len(layout.x) if (rc.record_prior and layout.table_idx is not None) else None
    fn = make_chunk_fn(model, layout, task.y_train, chunk_size, n_table is not None,
                       output_draws=rc.output_draws)
    kw = dict(chunk_size=chunk_size, n_samples=rc.n_samples, n_test=task.n_test, n_table=n_table)
    return fn, stream_key(cfg.seed, "rejection"), kw


def rejection_block(cfg_json: str, chunk_size: int, chunk_ids: list[int]):
    """Worker task: the exact result of the given chunks (the last chunk may be partial)."""
    import jax

    from .samplers._rejection import run_rejection_chunks

    fn, stream, kw = _rejection_setup(cfg_json, chunk_size)
    devices = jax.devices()
    out = None
    for i in range(0, len(chunk_ids), 8):  # blocks of 8 in flight, as in a single process
        part = run_rejection_chunks(fn, stream, chunk_ids[i:i + 8], devices=devices, **kw)
        if out is None:
            out = part
        else:
            out.merge(part)
    return out


def _cfg_json(cfg) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def _gather(client, futures, on_part, merge_into, show, total, desc, unit, size_of):
    from distributed import as_completed
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show, dynamic_ncols=True)
    try:
        for _, part in as_completed(futures, with_results=True):
            if on_part is not None:
                on_part(part)
            if merge_into is not None:
                merge_into(part)
            bar.update(size_of(part))
    finally:
        bar.close()
        client.cancel([f for f in futures if not f.done()])


def run_rejection_distributed(scheduler, cfg, chunk_ids, *, show: bool = False,
                              chunk_size: int | None = None, on_part=None,
                              block: int = REJECTION_BLOCK):
    """Run rejection chunks ``chunk_ids`` of ``cfg`` on the workers of ``scheduler``.

    ``scheduler`` is an address (``tcp://host:8786``), ``local[:N]``, or a ``Client``.  Returns
    the merged ``RejectionResult``; with ``on_part``, each block's result is passed to
    ``on_part`` as it arrives (in the calling thread: it may checkpoint) and nothing is
    returned.  ``chunk_size`` defaults to the config's (or ``default_chunk_size`` here).
    """
    from .models import build_model
    from .samplers._common import EvalLayout
    from .samplers._rejection import RejectionResult, rejection_chunk_size
    from .tasks import build_task

    rc = cfg.samplers.rejection
    task = build_task(cfg.task)
    layout = EvalLayout.for_task(task)
    if not chunk_size:
        chunk_size = rc.chunk_size or rejection_chunk_size(
            build_model(cfg.model, task.input_shape), len(layout.x), rc.output_draws)
    n_table = len(layout.x) if (rc.record_prior and layout.table_idx is not None) else None
    chunk_ids = [int(c) for c in chunk_ids]
    if any(c < 0 or c >= math.ceil(rc.n_samples / chunk_size) for c in chunk_ids):
        raise ValueError("chunk_ids: outside the chunks of samplers.rejection.n_samples")
    total = RejectionResult(FunctionCounter(task.n_test),
                            FunctionCounter(n_table) if n_table else None, chunk_size=chunk_size,
                            output_draws=rc.output_draws)
    cfg_json = _cfg_json(cfg)
    blocks = [chunk_ids[i:i + block] for i in range(0, len(chunk_ids), block)]
    with _client(scheduler) as client:
        futures = [client.submit(rejection_block, cfg_json, chunk_size, b, pure=False)
                   for b in blocks]
        _gather(client, futures, on_part, None if on_part else total.merge, show,
                sum(min(chunk_size, rc.n_samples - c * chunk_size) for c in chunk_ids),
                "rejection", "net", lambda p: p.n_samples)
    return None if on_part else total


# ---- SGD ----------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _sgd_setup(cfg_json: str, slots: int):
    from .config import config_from_dict
    from .experiment import sgd_trainer_and_run_kwargs
    from .models import build_model
    from .tasks import build_task

    cfg = config_from_dict(json.loads(cfg_json))
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    return sgd_trainer_and_run_kwargs(cfg, task, model, slots=slots)


def sgd_block(cfg_json: str, slots: int, run_ids: list[int]):
    """Worker task: train the given run ids to completion (records and counts)."""
    trainer, run_kw = _sgd_setup(cfg_json, slots)
    return trainer.run(run_ids, **run_kw)


def run_sgd_distributed(scheduler, cfg, run_ids, *, slots: int, show: bool = False,
                        on_part=None, block: int | None = None):
    """Train SGD runs ``run_ids`` of ``cfg`` on the workers of ``scheduler``, ``slots`` networks
    at once per worker, in blocks of ``block`` run ids (default 4 x slots).  Returns the merged
    ``SGDResult``; with ``on_part``, each block's result goes to ``on_part`` as it arrives and
    nothing is returned."""
    from .samplers._sgd import SGDResult

    cfg_json = _cfg_json(cfg)
    run_ids = [int(r) for r in run_ids]
    block = block or max(4 * slots, 64)
    blocks = [run_ids[i:i + block] for i in range(0, len(run_ids), block)]
    total = SGDResult(FunctionCounter(_n_test(cfg)))
    with _client(scheduler) as client:
        futures = [client.submit(sgd_block, cfg_json, slots, b, pure=False) for b in blocks]
        _gather(client, futures, on_part, None if on_part else total.merge, show, len(run_ids),
                "sgd", "run", lambda p: len(p.records))
    return None if on_part else total


def _n_test(cfg) -> int:
    from .tasks import build_task

    return build_task(cfg.task).n_test
