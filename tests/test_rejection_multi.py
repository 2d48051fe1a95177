"""One rejection pass shared by several targets that differ only in the target and S.

The separate passes key chunk c of every target by ``fold_in(stream_key(seed, "rejection"),
c)``: neither the target nor S enters the key, so with the same seed and chunk size they draw
the same networks.  The shared pass must therefore give, for every target, exactly the counts
of that target's own pass: posterior table (per half), prior table, n_samples, n_accepted and
the hidden-draw statistics.  The reference is ``run_rejection_chunks`` run on each target
alone (the sampler the package has used so far, itself checked against numpy in
``test_rejection.py``).  Cases: independent draws (S first, and recording the prior), several
output layers per hidden draw (the paper-scale setting, 7-40-40-1 on all 128 inputs), a
partial last chunk, and targets that already hold some chunks (a resumed run).
"""
from __future__ import annotations

import numpy as np
import pytest

from bayes_sgd.models import FCN
from bayes_sgd.samplers import (EvalLayout, make_chunk_fn, make_shared_chunk_fn,
                                run_rejection_chunks, run_shared_rejection_chunks, stream_key)
from bayes_sgd.tasks import boolean_task

STREAM = stream_key(0, "rejection")

# n = 5: three targets, the first two on one S of 5 inputs, the third on another S of 4
N5 = dict(n=5, widths=(8,), sets=[("and3", "10010010000100000100000000000001"),
                                  ("01" * 16, "10010010000100000100000000000001"),
                                  ("x1_and_xn", "00000100001000000001000000100000")])
# n = 7, the paper's network: three targets, two sharing one S of 8 inputs
_S8 = "".join("1" if i in (3, 17, 40, 64, 77, 90, 101, 127) else "0" for i in range(128))
_S8b = "".join("1" if i in (0, 9, 33, 52, 64, 88, 111, 120) else "0" for i in range(128))
N7 = dict(n=7, widths=(40, 40), sets=[("0011" * 32, _S8), ("and4", _S8), ("first_bit", _S8b)])

CASES = [  # (id, setting, output_draws, record_prior, chunk, n_chunks, n_samples - n_chunks*chunk)
    ("n5_s_first", N5, 1, False, 512, 24, 0),
    ("n5_prior", N5, 1, True, 512, 12, -100),
    ("n5_k16_partial", N5, 16, False, 1024, 12, -300),
    ("n7_k64", N7, 64, False, 4096, 10, 0),
]


def _tasks(setting):
    return [boolean_task(setting["n"], t, mask=m) for t, m in setting["sets"]]


def _separate(model, task, chunk, k, record_prior, ids, n_samples):
    layout = EvalLayout.for_task(task)
    fn = make_chunk_fn(model, layout, task.y_train, chunk, record_prior, output_draws=k)
    return run_rejection_chunks(fn, STREAM, ids, chunk_size=chunk, n_samples=n_samples,
                                n_test=task.n_test, n_table=len(layout.x) if record_prior else None)


def _shared(model, tasks, chunk, k, record_prior, ids, n_samples, skip=None):
    layouts = [EvalLayout.for_task(t) for t in tasks]
    fn = make_shared_chunk_fn(model, layouts[0].x, [(l.s_idx, t.y_train) for l, t in zip(layouts, tasks)],
                              chunk, record_prior, output_draws=k)
    return run_shared_rejection_chunks(
        fn, STREAM, ids, chunk_size=chunk, n_samples=n_samples, e_idx=[l.e_idx for l in layouts],
        n_table=len(layouts[0].x) if record_prior else None, skip=skip), fn


def _assert_same(a, b):
    for u, v in zip(a.posterior.table(), b.posterior.table()):
        np.testing.assert_array_equal(u, v)
    assert (a.prior is None) == (b.prior is None)
    if a.prior is not None:
        for u, v in zip(a.prior.table(), b.prior.table()):
            np.testing.assert_array_equal(u, v)
    assert (a.n_samples, a.n_accepted, a.n_groups, a.sum_accepted_sq, a.chunks_done) == \
           (b.n_samples, b.n_accepted, b.n_groups, b.sum_accepted_sq, b.chunks_done)


# the paper's net (10 chunks of 4,096 x 64 draws) is the slowest case: the slow pass runs it,
# the n = 5 cases cover output_draws > 1 and a partial chunk in the default suite
SLOW_CASES = {"n7_k64"}


@pytest.mark.parametrize("name, setting, k, record_prior, chunk, n_chunks, tail", [
    pytest.param(*c, id=c[0], marks=pytest.mark.slow if c[0] in SLOW_CASES else ()) for c in CASES])
def test_shared_pass_equals_each_targets_own_pass(name, setting, k, record_prior, chunk,
                                                  n_chunks, tail):
    model = FCN(setting["n"], setting["widths"])
    tasks = _tasks(setting)
    n_samples = n_chunks * chunk + tail
    ids = range(n_chunks)
    shared, fn = _shared(model, tasks, chunk, k, record_prior, ids, n_samples)
    for task, res in zip(tasks, shared):
        alone = _separate(model, task, chunk, k, record_prior, ids, n_samples)
        assert alone.n_accepted >= 20, "the setting must accept networks for the test to bite"
        _assert_same(res, alone)
    # the targets differ: the comparison is not of one target with itself
    assert len({r.n_accepted for r in shared}) > 1
    if name == "n5_s_first":  # fits in every chunk: the gathering executable took over
        assert fn.gather_size > 0


def test_targets_that_hold_chunks_already_get_only_the_others():
    """A resumed target skips the chunks it has; the others get every chunk; merged with its
    earlier part each equals one uninterrupted pass."""
    model, tasks = FCN(5, (8,)), _tasks(N5)
    chunk, ids = 512, range(8)
    whole, _ = _shared(model, tasks, chunk, 1, False, ids, 8 * chunk)
    earlier = _separate(model, tasks[1], chunk, 1, False, [0, 3, 5], 8 * chunk)
    rest, _ = _shared(model, tasks, chunk, 1, False, ids, 8 * chunk,
                      skip=[set(), {0, 3, 5}, set()])
    assert rest[1].chunks_done == {1, 2, 4, 6, 7}
    earlier.merge(rest[1])
    _assert_same(earlier, whole[1])
    _assert_same(rest[0], whole[0])
    _assert_same(rest[2], whole[2])


# ---- the runs' folders: run_shared_rejection, then run_experiment, vs each run on its own --------

# the paper's targets config (task.train_mask, no train_size) made tiny
_RUN = ["task.n=5", "model.widths=[8]", "samplers.sgd.enabled=false", "samplers.gp.enabled=false",
        "samplers.rejection.n_samples=30000", "samplers.rejection.chunk_size=1024",
        "samplers.rejection.output_draws=1", "analysis.plot=false"]
_RUN_TARGETS = {"a": N5["sets"][0], "b": N5["sets"][1], "c": N5["sets"][2]}


def _run_cfgs(extra=()):
    from bayes_sgd.config import load_config
    from bayes_sgd.reproduce import FIGURES, config_path

    path = str(config_path(FIGURES["targets_n7"], "paper"))
    return {n: load_config(path, [*_RUN, f"task.target={t}", f"task.train_mask={m}",
                                          f"name=multi_{n}", *extra])
            for n, (t, m) in _RUN_TARGETS.items()}


def _rejection_rows(folder):
    import pandas as pd

    df = pd.read_parquet(folder / "functions.parquet")
    return df.sort_values(["sampler", "function"]).reset_index(drop=True)


def _same_folders(shared_dir, alone_dir, names):
    import json

    import pandas as pd

    for n in names:
        a, b = shared_dir / n, alone_dir / n
        pd.testing.assert_frame_equal(_rejection_rows(a), _rejection_rows(b), check_exact=True)
        sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
        assert sa["rejection"].pop("shared_pass_runs") == len(names)
        for s in (sa, sb):
            s["rejection"].pop("samples_per_s")
            s.pop("timings_s")
        assert sa == sb


@pytest.mark.slow  # the S-first path is the default test below, interrupted and resumed
def test_shared_pass_with_the_prior_writes_each_runs_own_results(tmp_path):
    extra = ("samplers.rejection.record_prior=true",)
    from bayes_sgd.experiment import run_experiment, run_shared_rejection

    cfgs = _run_cfgs(extra)
    outs = {n: tmp_path / "shared" / n for n in cfgs}
    assert run_shared_rejection(cfgs, outs, show_progress=False) == [list(cfgs)]
    for n, cfg in cfgs.items():
        run_experiment(cfg, outs[n], show_progress=False)
        run_experiment(cfg, tmp_path / "alone" / n, show_progress=False)
    _same_folders(tmp_path / "shared", tmp_path / "alone", list(cfgs))
    # the rate: every sample was drawn in a timed session (both of the shared pass), and the
    # summary's rate is theirs, not all samples over the last session's time
    import json

    for n, cfg in cfgs.items():
        ck = np.load(outs[n] / "checkpoints" / "rejection.npz")
        want = cfg.samplers.rejection.n_samples  # 30,000 here (_RUN)
        assert int(ck["timed_samples"]) == int(ck["n_samples"]) == want
        assert int(ck["shared_runs"]) == 3
        rate = json.loads((outs[n] / "summary.json").read_text())["rejection"]["samples_per_s"]
        assert rate == pytest.approx(want / float(ck["seconds"]), rel=1e-12)


def test_interrupted_shared_pass_resumes_without_loss(tmp_path, monkeypatch):
    """Stopped after its second block of chunks (checkpoints every block), the pass resumes
    from the runs' checkpoints: the results equal uninterrupted runs of each target alone."""
    from bayes_sgd.experiment import run_experiment, run_shared_rejection
    from bayes_sgd.interrupts import Interrupted
    from bayes_sgd.samplers import _rejection_runner as runner

    monkeypatch.setenv("BAYES_SGD_CHECKPOINT_SECONDS", "1e-9")
    cfgs = _run_cfgs(["samplers.rejection.n_samples=40000"])  # 40 chunks: 5 blocks of 8
    outs = {n: tmp_path / "shared" / n for n in cfgs}
    calls, real = [], runner.run_shared_rejection_chunks

    def stop_at_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted("SIGINT")
        return real(*a, **kw)

    monkeypatch.setattr(runner, "run_shared_rejection_chunks", stop_at_third)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        run_shared_rejection(cfgs, outs, show_progress=False)
    monkeypatch.setattr(runner, "run_shared_rejection_chunks", real)
    ck = np.load(outs["b"] / "checkpoints" / "rejection.npz")
    assert sorted(ck["done_chunks"]) == list(range(16))
    assert run_shared_rejection(cfgs, outs, show_progress=False) == [list(cfgs)]
    for n, cfg in cfgs.items():
        run_experiment(cfg, outs[n], show_progress=False)
        run_experiment(cfg, tmp_path / "alone" / n, show_progress=False)
    _same_folders(tmp_path / "shared", tmp_path / "alone", list(cfgs))
    # the rate: every sample was drawn in a timed session (both of the shared pass), and the
    # summary's rate is theirs, not all samples over the last session's time
    import json

    for n in cfgs:
        ck = np.load(outs[n] / "checkpoints" / "rejection.npz")
        assert int(ck["timed_samples"]) == int(ck["n_samples"]) == 40000
        assert int(ck["shared_runs"]) == 3
        rate = json.loads((outs[n] / "summary.json").read_text())["rejection"]["samples_per_s"]
        assert rate == pytest.approx(40000 / float(ck["seconds"]), rel=1e-12)
