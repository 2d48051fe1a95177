"""Host-side work on long truth tables is bounded and interruptible (issue 13, item 3).

C_LZ's compiled loop cannot be interrupted inside one XLA call, so calls carry bounded work
(rows x n^2) and Ctrl-C is honoured between them; strings longer than ``LZ_MAX_BITS`` are
refused, and the function table leaves their ``lz`` as nan."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bayes_sgd.complexity import (LZ_BATCH_ROWS, LZ_CALL_WORK, LZ_MAX_BITS, lz_complexity,
                                  lz_complexity_batch, lz_rows_per_call)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n, rows", [(1, LZ_BATCH_ROWS), (128, 4096), (256, 1024), (1000, 64),
                                     (4096, 4)])
def test_rows_per_call_bound_the_work(n, rows):
    assert lz_rows_per_call(n) == rows
    assert rows == 1 or rows * n * n <= LZ_CALL_WORK


def test_batches_give_the_scalar_values_across_call_boundaries():
    """Several calls of lz_rows_per_call(n) rows (the last padded) against the scalar loop."""
    n = 700  # 128 rows a call: 150 rows are two calls, the second padded
    rng = np.random.default_rng(3)
    bits = (rng.random((150, n)) < rng.random((150, 1))).astype(np.uint8)
    assert lz_rows_per_call(n) == 128
    got = lz_complexity_batch(bits)
    rows = [0, 1, 126, 127, 128, 129, 148, 149]  # both sides of the call boundary, the ends
    want = [lz_complexity(bits[i]) for i in rows]
    np.testing.assert_allclose(got[rows], want, rtol=0, atol=1e-9)


def test_longer_strings_are_refused_and_left_nan_in_the_table():
    with pytest.raises(ValueError, match=f"at most {LZ_MAX_BITS} bits"):
        lz_complexity_batch(np.zeros((1, LZ_MAX_BITS + 1), np.uint8))
    from bayes_sgd.counting import FunctionCounter
    from bayes_sgd.function_table import counter_frame
    from bayes_sgd.tasks import boolean_task

    task = boolean_task(13, "and4", train_size=8)
    counter = FunctionCounter(task.n_test)
    counter.add_bits(np.zeros((3, task.n_test), bool))
    frame = counter_frame("sgd", counter, task)
    assert len(frame) == 1 and np.isnan(frame["lz"].iloc[0]) and frame["count"].iloc[0] == 3


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_ctrl_c_gets_through_a_long_c_lz_batch(sig):
    """A subprocess computes C_LZ of 4,000 random 4,096-bit tables (minutes of work); the
    signal sent after the first call has run stops it within 15 s (one call is ~0.1 s on an
    idle core; the margin is for a loaded machine)."""
    code = textwrap.dedent("""
        import signal, sys, numpy as np
        from bayes_sgd import complexity
        # SIG_IGN is inherited across exec, and Python keeps an ignored SIGINT ignored: a test
        # run whose process ignores SIGINT (seen in a pytest-xdist worker after other tests)
        # would hand that on; a user's shell process has the default, restored here
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        bits = np.random.default_rng(0).integers(0, 2, (4000, 4096)).astype(np.uint8)
        complexity.lz_complexity_batch(bits[:4])  # compiled
        print("started", flush=True)
        try:
            complexity.lz_complexity_batch(bits)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        print("finished", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "started"
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=15)
        dt = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (out, err)
    assert "interrupted" in out and dt < 15
