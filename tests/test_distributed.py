"""Dask distributed runs on a LocalCluster equal single-process runs with the same seed.

The reference is the single-process path (``run_rejection_chunks`` / ``SGDTrainer.run`` in this
process, and ``run_experiment`` without a scheduler); the distributed path rebuilds task and
model from the config on two worker processes, in blocks small enough that both workers take
several, and merges what comes back in completion order.  Counts are exact integers, so the
comparison is exact equality (no tolerance).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import load_config
from bayes_sgd.distributed import run_rejection_distributed, run_sgd_distributed
from bayes_sgd.experiment import run_experiment, sgd_trainer_and_run_kwargs
from bayes_sgd.models import build_model
from bayes_sgd.samplers import EvalLayout, make_chunk_fn, run_rejection_chunks, stream_key
from bayes_sgd.tasks import build_task

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

distributed = pytest.importorskip("distributed")

OVERRIDES = [
    "name='tiny-dask'", "seed=5", "task.n=5", "task.target=and3", "task.train_size=6",
    "model.widths=[8]", "samplers.rejection.n_samples=20000",
    "samplers.rejection.chunk_size=1024", "samplers.rejection.record_prior=true",
    "samplers.sgd.n_runs=48", "samplers.sgd.max_epochs=200", "samplers.sgd.batch_size=4",
    "analysis.plot=false",
]


@pytest.fixture(scope="module")
def cfg():
    return load_config(QUICK_CONFIG, OVERRIDES)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _table(counter):
    return counter.table()  # keys sorted bytewise, counts per half


def test_rejection_blocks_on_workers_equal_one_process(cfg, client):
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    layout = EvalLayout.for_task(task)
    chunk = cfg.samplers.rejection.chunk_size
    n_chunks = -(-cfg.samplers.rejection.n_samples // chunk)
    fn = make_chunk_fn(model, layout, task.y_train, chunk, True)
    ref = run_rejection_chunks(fn, stream_key(cfg.seed, "rejection"), range(n_chunks),
                               chunk_size=chunk, n_samples=cfg.samplers.rejection.n_samples,
                               n_test=task.n_test, n_table=len(layout.x))
    got = run_rejection_distributed(client, cfg, list(range(n_chunks)), block=3)
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted) == (20000, ref.n_accepted)
    assert got.chunks_done == set(range(n_chunks))
    for a, b in ((got.posterior, ref.posterior), (got.prior, ref.prior)):
        ka, ca = _table(a)
        kb, cb = _table(b)
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_array_equal(ca, cb)
    assert got.prior.total == 20000


def test_sgd_blocks_on_workers_equal_one_process(cfg, client):
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.input_shape)
    trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
    ref = trainer.run(range(48), **run_kw)
    got = run_sgd_distributed(client, cfg, list(range(48)), slots=trainer.P, block=8)
    assert got.records == ref.records and len(got.records) == 48
    ka, ca = _table(got.counter)
    kb, cb = _table(ref.counter)
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_array_equal(ca, cb)
    assert got.counter.total == ref.n_fitted


def test_run_experiment_with_scheduler_equals_single_process(cfg, client, tmp_path):
    one = run_experiment(cfg, tmp_path / "one", show_progress=False)
    many = run_experiment(cfg, tmp_path / "many", show_progress=False, scheduler=client)
    for name in ("functions.parquet", "runs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "many" / name),
                                      pd.read_parquet(tmp_path / "one" / name))
    assert many["agreement"] == one["agreement"]
    for key in ("n_samples", "n_accepted", "n_functions"):
        assert many["rejection"][key] == one["rejection"][key]
    man = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert man["status"] == "complete"
