"""Real kills at random points: ``bayes-sgd run`` is killed (SIGKILL, SIGTERM, SIGINT) while it
samples, rerun into the same folder until it completes, and must give exactly the tables of an
uninterrupted run with the same config (the reference, run in this process).

Checkpoints are written every 0.2 s (``BAYES_SGD_CHECKPOINT_SECONDS``) so that kills land
between, during and right after checkpoint writes.

Marked ``slow`` (about 130 s on one core: six process start-ups and their compiles), so it runs in
CI's second pass (``.ci/run``); the default suite keeps the in-process interrupt-and-resume test
of ``test_experiment.py``.  Each kill waits for a fresh checkpoint of
the sampler it is meant to cut (twice rejection, twice SGD), then a random delay drawn from a
seeded generator; the test checks that every kill did interrupt a run (exit code not 0) part-way
through its sampler, so it cannot pass by the run finishing first.  Exact equality: counts are integers and every chunk /
run has its own key, so there is no tolerance.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import load_config
from bayes_sgd.experiment import run_experiment

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

OVERRIDES = [
    "name='kill-resume'", "seed=3", "task.n=5", "task.target=and3", "task.train_size=6",
    "model.widths=[8]", "samplers.rejection.n_samples=2000000",
    "samplers.rejection.chunk_size=1024", "samplers.rejection.record_prior=true",
    "samplers.sgd.n_runs=4096", "samplers.sgd.max_epochs=1000", "samplers.sgd.batch_size=4",
    "samplers.sgd.lr=0.0003",  # slow enough (~2 s of SGD here) for kills to land mid-sampler
    "analysis.plot=false",
]
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "bayes_sgd.cli"]  # what the bayes-sgd console script runs


def _start(out):
    cmd = CLI + ["run", QUICK_CONFIG, "--out", str(out), "--quiet"] + [a for o in OVERRIDES for a in ("--set", o)]
    env = dict(os.environ, BAYES_SGD_CHECKPOINT_SECONDS="0.2")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _mtime(path):
    return path.stat().st_mtime_ns if path.exists() else None


def _wait_for_write(path, proc, before, timeout=240.0):
    """Until ``path`` is (re)written by this run: a checkpoint of the sampler we want to cut."""
    t0 = time.monotonic()
    while _mtime(path) == before:
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path.name} was not written before the run ended: "
                                 f"{proc.communicate()[1].decode()[-2000:]}")
        time.sleep(0.01)


def test_killed_runs_resume_to_the_uninterrupted_counts(tmp_path):
    ref = tmp_path / "ref"
    run_experiment(load_config(QUICK_CONFIG, OVERRIDES), ref, show_progress=False)

    out = tmp_path / "killed"
    rng = np.random.default_rng(20261201)
    # Sampling takes ~3 s of rejection then ~4 s of SGD here after the manifest appears: kill
    # times cover both samplers (and the checkpoint writes between them).
    # Each kill waits for a fresh checkpoint of one sampler, then a random 0-0.3 s (what a
    # chunk or a sync takes here), so it lands inside that sampler's work whatever the load.
    plan = [(signal.SIGKILL, "rejection"), (signal.SIGTERM, "rejection"),
            (signal.SIGINT, "sgd"), (signal.SIGKILL, "sgd")]
    progress = []
    for sig, sampler in plan:
        ck = out / "checkpoints" / f"{sampler}.npz"
        before = _mtime(ck)
        proc = _start(out)
        _wait_for_write(ck, proc, before)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, f"the run finished before {sig.name}: the kill tested nothing"
        if sig != signal.SIGKILL:  # a clean interrupt says so and exits 130
            assert proc.returncode == 130 and b"interrupted" in err, err.decode()[-2000:]
        man = json.loads((out / "manifest.json").read_text())
        assert man["status"] == "running"
        assert not (out / "functions.parquet").exists()  # nothing that looks complete
        z = np.load(ck)
        progress.append(int(z["n_samples"]) if sampler == "rejection" else len(z["run_id"]))

    proc = _start(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    # the kills cut real work: each sampler was part-way through when it was killed
    assert all(0 < r < 2_000_000 for r in progress[:2]) and all(0 < n < 4096 for n in progress[2:]), \
        progress
    for name in ("functions.parquet", "runs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(ref / name))
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert a["agreement"] == b["agreement"]
    assert (a["rejection"]["n_samples"], a["rejection"]["n_accepted"]) == \
        (b["rejection"]["n_samples"], b["rejection"]["n_accepted"]) == (2_000_000, a["rejection"]["n_accepted"])
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
