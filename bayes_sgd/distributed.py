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

import itertools
import json
import math
import re
from contextlib import contextmanager
from functools import lru_cache

from ._env import env_seconds
from .counting import FunctionCounter

REJECTION_BLOCK = 32  # chunks per task (about a second of work on one CPU core at n = 7)
CONNECT_SECONDS = 20.0  # default; BAYES_SGD_SCHEDULER_TIMEOUT overrides it
MAX_LOCAL_WORKERS = 1024

_ADDRESS = re.compile(r"^(?:(tcp|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
                      r":(\d{1,5})$")


class SchedulerError(RuntimeError):
    """The Dask scheduler given by ``--scheduler`` is malformed, unreachable or refused us."""


def check_scheduler_address(address: str) -> str:
    """``address`` if it is ``local``, ``local:N`` or ``[tcp|tls://]HOST:PORT`` (port 1-65535),
    else ``SchedulerError`` naming it (before any work or connection)."""
    if not isinstance(address, str):
        raise SchedulerError(f"--scheduler: expected an address string, got {address!r}")
    text = address.strip()
    if text == "local":
        return text
    if text.startswith("local:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise SchedulerError(f"--scheduler {address}: expected local:N with N in "
                                 f"[1, {MAX_LOCAL_WORKERS}] worker processes")
        return text
    m = _ADDRESS.match(text)
    if m is None or not 1 <= int(m.group(4)) <= 65535:
        raise SchedulerError(f"--scheduler {address!r}: expected tcp://HOST:PORT (port 1-65535), "
                             "local or local:N")
    return text


def connect_seconds() -> float:
    """Seconds to wait for the scheduler: ``$BAYES_SGD_SCHEDULER_TIMEOUT`` if set (> 0), else 20."""
    return env_seconds("BAYES_SGD_SCHEDULER_TIMEOUT", CONNECT_SECONDS, below=3600,
                       error=SchedulerError)
IN_FLIGHT_PER_WORKER = 4  # blocks submitted per worker ahead of the results


@contextmanager
def _client(scheduler):
    """A ``distributed.Client`` for an address, ``local[:N]``, or an existing Client/cluster.

    An address that cannot be reached within ``connect_seconds()`` (refused, unroutable, not a
    scheduler) raises ``SchedulerError`` naming it; Dask's own retries stop at that limit."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    scheduler = check_scheduler_address(scheduler)
    if scheduler == "local" or scheduler.startswith("local:"):
        n = int(scheduler.split(":", 1)[1]) if ":" in scheduler else None
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    timeout = connect_seconds()
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as e:  # refused, timed out, bad host name
        raise SchedulerError(
            f"--scheduler {scheduler}: could not connect within {timeout:g} s "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); start the scheduler "
            "or omit --scheduler, then rerun the same command to resume") from None
    with client:
        yield client


@lru_cache(maxsize=4)
def _rejection_setup(cfg_json: str, chunk_size: int):
    import jax  # noqa: F401  (imported on the worker)

    from .config import config_from_dict
    from .models import build_model
    from .samplers import EvalLayout, make_chunk_fn, stream_key
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

    from .samplers import run_rejection_chunks

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


def _blocks(ids, block: int, check=None):
    """Lists of ``block`` ids drawn lazily from ``ids`` (any iterable, e.g. a huge range)."""
    it = iter(ids)
    while True:
        b = [int(i) for i in itertools.islice(it, block)]
        if not b:
            return
        if check is not None:
            check(b)
        yield b


def _gather(client, submit, blocks, on_part, merge_into, show, total, desc, unit, size_of,
            window: int = IN_FLIGHT_PER_WORKER):
    """Submit ``blocks`` with at most ``window`` per worker in flight (memory bounded by the
    blocks, not by the number of ids) and hand each result to ``on_part``/``merge_into``."""
    from distributed import as_completed
    from .progress import progress as tqdm

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    pending = as_completed()
    live = set()

    def more(k: int) -> None:
        for b in itertools.islice(blocks, k):
            f = submit(b)
            live.add(f)
            pending.add(f)

    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show, dynamic_ncols=True)
    try:
        more(window * n_workers)
        for fut in pending:
            part = fut.result()
            live.discard(fut)
            if on_part is not None:
                on_part(part)
            if merge_into is not None:
                merge_into(part)
            bar.update(size_of(part))
            more(1)
    finally:
        bar.close()
        client.cancel([f for f in live if not f.done()])


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
    from .samplers import EvalLayout, RejectionResult, rejection_chunk_size
    from .tasks import build_task

    rc = cfg.samplers.rejection
    task = build_task(cfg.task)
    layout = EvalLayout.for_task(task)
    if not chunk_size:
        chunk_size = rc.chunk_size or rejection_chunk_size(
            build_model(cfg.model, task.input_shape), len(layout.x), rc.output_draws)
    n_table = len(layout.x) if (rc.record_prior and layout.table_idx is not None) else None
    n_chunks = math.ceil(rc.n_samples / chunk_size)

    def check(b):
        if any(c < 0 or c >= n_chunks for c in b):
            raise ValueError("chunk_ids: outside the chunks of samplers.rejection.n_samples")

    total = RejectionResult(FunctionCounter(task.n_test),
                            FunctionCounter(n_table) if n_table else None, chunk_size=chunk_size,
                            output_draws=rc.output_draws)
    cfg_json = _cfg_json(cfg)
    sized = len(chunk_ids) if hasattr(chunk_ids, "__len__") else None
    with _client(scheduler) as client:
        _gather(client, lambda b: client.submit(rejection_block, cfg_json, chunk_size, b, pure=False),
                _blocks(chunk_ids, block, check), on_part, None if on_part else total.merge, show,
                sized and sized * chunk_size, "rejection", "net", lambda p: p.n_samples)
    return None if on_part else total


# ---- SGD ----------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _sgd_setup(cfg_json: str, slots: int):
    from .config import config_from_dict
    from .models import build_model
    from .samplers import sgd_trainer_and_run_kwargs
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
    from .samplers import SGDResult

    cfg_json = _cfg_json(cfg)
    block = block or max(4 * slots, 64)
    total = SGDResult(FunctionCounter(_n_test(cfg)))
    with _client(scheduler) as client:
        _gather(client, lambda b: client.submit(sgd_block, cfg_json, slots, b, pure=False),
                _blocks(run_ids, block), on_part, None if on_part else total.merge, show,
                len(run_ids) if hasattr(run_ids, "__len__") else None, "sgd", "run",
                lambda p: len(p.records))
    return None if on_part else total


def _n_test(cfg) -> int:
    from .tasks import build_task

    return build_task(cfg.task).n_test
