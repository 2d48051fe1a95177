"""The sampler protocol end to end with a toy fifth sampler defined only here, and the results
folder's guarantees (issue 13): damaged checkpoints never destroy finished results, ``--restart``,
the lock, and honest interrupt messages.

The toy sampler draws functions on E uniformly at random (bit ``i`` of draw ``j`` of chunk ``c``
from ``numpy.random.default_rng((seed, stream, c))``), so its counts have an independent
reference: the same draws made here with numpy and counted with ``collections.Counter``.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bayes_sgd import cli
from bayes_sgd.config import SamplerSection, config_from_dict, load_config
from bayes_sgd.counting import FunctionCounter
from bayes_sgd.experiment import Interrupted, run_experiment
from bayes_sgd.function_table import counter_frame
from bayes_sgd.results_folder import ResultsFolderError, folder_lock
from bayes_sgd.samplers import RunContext, Sampler, SamplerOutput, register, unregister

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)


@dataclass
class UniformConfig(SamplerSection):
    enabled: bool = False
    n_chunks: int = 6
    chunk_size: int = 50


class UniformSampler(Sampler):
    """P(f) uniform over the 2^|E| functions: a fifth sampler in one class and one config."""

    name, stream, config = "uniform", 99, UniformConfig
    interrupt_after: int | None = None  # tests: raise Interrupted after this many chunks

    def resume(self, ctx: RunContext, ck):
        counter, done = FunctionCounter(ctx.task.n_test), set()
        if ck is not None:
            counter = FunctionCounter.from_state(
                {"keys": ck["keys"], "counts": ck["counts"], "n_bits": ctx.task.n_test})
            done = set(ck["done"].tolist())
        return counter, done

    def state_arrays(self, state):
        counter, done = state
        keys, counts = counter.table()
        return dict(keys=keys, counts=counts, done=np.array(sorted(done), np.int64))

    def run(self, ctx: RunContext, state) -> SamplerOutput:
        counter, done = state
        uc = ctx.cfg.samplers.uniform
        try:
            for c in range(uc.n_chunks):
                if c in done:
                    continue
                if self.interrupt_after is not None and len(done) >= self.interrupt_after:
                    raise Interrupted("SIGINT")
                with ctx.interrupts.critical():
                    counter.add_bits(draws(ctx.cfg.seed, c, uc.chunk_size, ctx.task.n_test),
                                     half=c % 2)
                    done.add(c)
        finally:
            ctx.save(self, (counter, done))
        return SamplerOutput([counter_frame(self.name, counter, ctx.task)],
                             {"n_samples": int(counter.table()[1].sum())})


def draws(seed, c, size, n_test):
    return np.random.default_rng((seed, UniformSampler.stream, c)).integers(
        0, 2, (size, n_test)).astype(bool)


@pytest.fixture
def uniform():
    s = register(UniformSampler())
    yield s
    unregister("uniform")


OVERRIDES = ["name=toy", "seed=5", "task.n=4", "task.target=and2", "task.train_size=8",
             "task.train_seed=0", "model.widths=[4]", "samplers.rejection.enabled=false",
             "samplers.sgd.enabled=false", "samplers.uniform.enabled=true",
             "analysis.plot=false", "analysis.min_counts=[1]"]


def _cfg():
    return load_config(QUICK_CONFIG, OVERRIDES)


def _reference(cfg, task_n_test=8):
    uc = cfg.samplers.uniform
    counts = Counter()
    for c in range(uc.n_chunks):
        for row in draws(cfg.seed, c, uc.chunk_size, task_n_test):
            counts["".join("1" if b else "0" for b in row)] += 1
    return counts


RESULTS = ("functions.parquet", "summary.json", "manifest.json")


def test_fifth_sampler_runs_and_resumes_through_run_experiment(uniform, tmp_path):
    cfg = _cfg()
    full = tmp_path / "full"
    summary = run_experiment(cfg, full, show_progress=False)
    assert set(summary["agreement"]["split_half"]) == {"uniform"}  # analysis knows it too
    df = pd.read_parquet(full / "functions.parquet")
    ref = _reference(cfg)
    assert set(df["sampler"]) == {"uniform"}
    assert dict(zip(df["function"], df["count"].astype(int))) == dict(ref)
    assert json.loads((full / "manifest.json").read_text())["status"] == "complete"

    cut = tmp_path / "cut"
    uniform.interrupt_after = 2
    with pytest.raises(Interrupted, match="checkpoint saved"):
        run_experiment(cfg, cut, show_progress=False)
    ck = np.load(cut / "checkpoints" / "uniform.npz")
    assert ck["done"].tolist() == [0, 1] and int(ck["counts"].sum()) == 2 * 50
    uniform.interrupt_after = None
    run_experiment(cfg, cut, show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(cut / "functions.parquet"), df)


def _complete_folder(tmp_path):
    cfg = _cfg()
    out = tmp_path / "r"
    run_experiment(cfg, out, show_progress=False)
    return cfg, out, {f: (out / f).read_bytes() for f in RESULTS}


DAMAGE = {
    "truncated": lambda p: os.truncate(p, 100),
    "random bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)),
    "empty": lambda p: p.write_bytes(b""),
    "foreign arrays": lambda p: np.savez(open(p, "wb"), keys=np.zeros((3, 7), np.uint8)),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_checkpoint_keeps_finished_results(uniform, tmp_path, capsys, how):
    """Issue 13 item 1: rerunning a complete folder with a damaged checkpoint gets one line
    naming the file and what to do, and every finished file is left byte for byte."""
    cfg, out, before = _complete_folder(tmp_path)
    ck = out / "checkpoints" / "uniform.npz"
    DAMAGE[how](ck)
    with pytest.raises(ResultsFolderError, match=r"uniform\.npz.*--restart.*delete"):
        run_experiment(cfg, out, show_progress=False)
    assert {f: (out / f).read_bytes() for f in RESULTS} == before
    # the command line: one line, exit status 2, no traceback
    capsys.readouterr()
    code = cli.main(["run", QUICK_CONFIG, "--out", str(out), "--quiet", *_cli_set()])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "uniform.npz" in err and "Traceback" not in err
    assert {f: (out / f).read_bytes() for f in RESULTS} == before
    # --restart discards the checkpoint and finishes the folder again, same tables
    code = cli.main(["run", QUICK_CONFIG, "--out", str(out), "--quiet", "--restart", *_cli_set()])
    assert code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "functions.parquet"),
                                  pd.read_parquet(io.BytesIO(before["functions.parquet"])))
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_interrupted_restart_of_a_finished_folder_keeps_it_finished(uniform, tmp_path):
    """Issue 13 item 1: ``--restart`` on a complete folder, interrupted: every finished file
    (manifest "complete" included) is left byte for byte; the next run completes it again."""
    cfg, out, before = _complete_folder(tmp_path)
    uniform.interrupt_after = 1
    with pytest.raises(Interrupted, match="checkpoint saved"):
        run_experiment(cfg, out, show_progress=False, restart=True)
    assert {f: (out / f).read_bytes() for f in RESULTS} == before
    assert np.load(out / "checkpoints" / "uniform.npz")["done"].tolist() == [0]
    uniform.interrupt_after = None
    run_experiment(cfg, out, show_progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and "resumed" in man
    pd.testing.assert_frame_equal(pd.read_parquet(out / "functions.parquet"),
                                  pd.read_parquet(io.BytesIO(before["functions.parquet"])))


def _cli_set():
    return [arg for o in OVERRIDES for arg in ("--set", o)]


def test_interrupt_before_any_checkpoint_does_not_claim_one(tmp_path, monkeypatch):
    """Issue 13 item 4: "checkpoint saved" only when one was written (NUTS keeps none)."""
    from bayes_sgd.samplers import NUTSSampler

    def interrupted(self, ctx, state):
        raise Interrupted("SIGINT")

    monkeypatch.setattr(NUTSSampler, "run", interrupted)
    cfg = config_from_dict({
        "task": {"kind": "boolean", "n": 3, "target": "majority", "train_size": 4},
        "model": {"widths": [4]},
        "samplers": {"rejection": {"enabled": False}, "sgd": {"enabled": False},
                     "nuts": {"enabled": True}}, "analysis": {"plot": False}})
    with pytest.raises(Interrupted) as e:
        run_experiment(cfg, tmp_path / "n", show_progress=False)
    assert "checkpoint saved" not in str(e.value) and "no checkpoint was written" in str(e.value)
    assert not list((tmp_path / "n" / "checkpoints").iterdir())


HOLDER = textwrap.dedent("""
    import sys, time
    from bayes_sgd.results_folder import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_lock(tmp_path):
    """Issue 13 item 7, with a real second process holding the lock."""
    out = tmp_path / "locked"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                         text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsFolderError, match=rf"in use by process {p.pid} on "):
            with folder_lock(out):
                pass
        held = json.loads((out / ".lock").read_text())
        assert held["pid"] == p.pid
    finally:
        p.kill()
        p.wait()
    # the holder died without releasing: its lock is stale (dead PID, this host) and taken over
    assert json.loads((out / ".lock").read_text())["pid"] == p.pid
    with folder_lock(out):
        assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    assert not (out / ".lock").exists()


def _stop_at_first_batch(ids_seen):
    def run(self, run_ids, **kw):
        import itertools
        ids_seen.extend(itertools.islice(run_ids, 10))
        raise Interrupted("SIGINT")
    return run


@pytest.mark.parametrize("sampler, overrides", [
    ("sgd", ["samplers.sgd.n_runs=3000000"]),
    ("rejection", ["samplers.rejection.n_samples=3000000", "samplers.rejection.chunk_size=1"]),
])
def test_memory_bounded_by_chunk_not_by_requested_total(sampler, overrides, tmp_path, monkeypatch):
    """Issue 13 item 4: 3*10^6 runs / chunks requested, interrupted at the first batch.  The
    work still to do is generated lazily, so the Python heap's peak (tracemalloc) stays under
    30 MB; a list of the 3*10^6 ids alone takes about 110 MB (28-byte ints + 8-byte slots)."""
    import tracemalloc

    from bayes_sgd.samplers import SGDTrainer, _rejection_runner

    seen: list = []
    if sampler == "sgd":
        monkeypatch.setattr(SGDTrainer, "run", _stop_at_first_batch(seen))
    else:
        def first(fn, stream, chunk_ids, **kw):
            seen.extend(chunk_ids)
            raise Interrupted("SIGINT")
        monkeypatch.setattr(_rejection_runner, "run_rejection_chunks", first)
    other = "rejection" if sampler == "sgd" else "sgd"
    cfg = load_config(QUICK_CONFIG, ["task.n=4", "task.target=and2", "task.train_size=8",
                             "model.widths=[4]", f"samplers.{other}.enabled=false", *overrides])
    tracemalloc.start()
    try:
        with pytest.raises(Interrupted, match="checkpoint saved"):
            run_experiment(cfg, tmp_path / sampler, show_progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen[:8] == list(range(8))
    assert peak < 30e6, peak
    assert (tmp_path / sampler / "checkpoints" / f"{sampler}.npz").exists()


CROSS_FIELD = [  # (overrides, message): checked once, in config, before any work
    (["task.kind=image", "model.arch=cnn", "samplers.nuts.enabled=true"],
     "samplers.nuts.enabled: NUTS samples the weights of an FCN only; expected false with model.arch = 'cnn'"),
    (["task.kind=image", "model.arch=cnn", "samplers.rejection.output_draws=2"],
     "samplers.rejection.output_draws: expected 1 for model.arch = 'cnn'"),
    (["samplers.rejection.output_draws=2", "samplers.rejection.record_prior=true"],
     "samplers.rejection.output_draws: expected 1 with record_prior = true"),
    (["samplers.rejection.output_draws=3", "samplers.rejection.chunk_size=1000"],
     "samplers.rejection.chunk_size: expected a multiple of output_draws = 3"),
    (["samplers.rejection.enabled=false", "samplers.sgd.enabled=false"],
     "samplers: expected at least one of rejection, sgd, nuts enabled"),
]


@pytest.mark.parametrize("overrides, message", CROSS_FIELD)
def test_cross_field_checks_in_config(overrides, message):
    from bayes_sgd.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(QUICK_CONFIG, overrides)
    assert str(e.value).startswith(message)


def test_a_registered_sampler_counts_towards_enabled_samplers(uniform):
    from bayes_sgd.config import ConfigError

    with pytest.raises(ConfigError, match="at least one of rejection, sgd, nuts, uniform enabled"):
        load_config(QUICK_CONFIG, ["samplers.rejection.enabled=false", "samplers.sgd.enabled=false"])
    cfg = load_config(QUICK_CONFIG, ["samplers.rejection.enabled=false", "samplers.sgd.enabled=false",
                             "samplers.uniform.enabled=true"])
    assert cfg.samplers.uniform.n_chunks == 6
    assert "uniform" in cfg.to_dict()["samplers"]
    # disabled, a registered section stays out of to_dict (other configs' manifests unchanged)
    assert "uniform" not in load_config(QUICK_CONFIG, []).to_dict()["samplers"]
