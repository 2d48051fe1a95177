"""Progress output: a tqdm bar on a terminal, plain lines at a set interval in a log."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_sgd.progress import PlainProgress, progress, progress_seconds

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(rejection|sgd): (done |stopped at )?[\d,]+/[\d,]+ (net|run) \([\d.]+ %\), "
                  r"[\d.,e+-]+ (net|run)/s, [\d,]+ s elapsed")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_tqdm_and_a_log_gets_plain_lines():
    from tqdm.auto import tqdm

    bar = progress(total=3, desc="x", stream=_Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress(total=3, desc="x", stream=io.StringIO()), PlainProgress)


def test_plain_lines_at_the_interval_and_at_the_end():
    out = io.StringIO()
    bar = PlainProgress(total=10, desc="sgd", unit="run", stream=out, interval=0.0)
    bar.update(4)
    bar.set_postfix(fitted=3)
    bar.update(6)
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 3  # two updates (interval 0) and the end
    assert lines[0].startswith("sgd: 4/10 run (40.0 %)")
    assert lines[1].startswith("sgd: 10/10 run (100.0 %)") and lines[1].endswith("fitted=3")
    assert lines[2].startswith("sgd: done 10/10 run (100.0 %)")
    quiet = io.StringIO()
    bar = PlainProgress(total=10, desc="sgd", stream=quiet, interval=3600.0)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert len(quiet.getvalue().splitlines()) == 1  # only the end line within the interval
    silent = io.StringIO()
    bar = PlainProgress(total=2, desc="x", stream=silent, disable=True, interval=0.0)
    bar.update(2)
    bar.close()
    assert silent.getvalue() == ""
    it = io.StringIO()
    assert list(PlainProgress(range(3), desc="gp", stream=it, interval=3600.0)) == [0, 1, 2]
    assert it.getvalue().startswith("gp: done 3/3 it")


@pytest.mark.parametrize("text, ok", [("", 30.0), ("0.5", 0.5), ("0", None), ("-1", None),
                                      ("nan", None), ("abc", None)])
def test_interval_from_the_environment(monkeypatch, text, ok):
    monkeypatch.setenv("BAYES_SGD_PROGRESS_SECONDS", text)
    if ok is None:
        with pytest.raises(ValueError, match="BAYES_SGD_PROGRESS_SECONDS"):
            progress_seconds()
    else:
        assert progress_seconds() == ok


@pytest.mark.slow  # two JAX compiles in a fresh process: ~30 s of CPU
def test_a_run_logged_to_a_file_has_plain_lines(tmp_path):
    """The whole CLI with stderr a pipe: every progress line is a plain line (no carriage
    returns), each stage ends with its 'done' line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), BAYES_SGD_PROGRESS_SECONDS="0.2")
    r = subprocess.run(
        [sys.executable, "-m", "bayes_sgd.cli", "run", QUICK_CONFIG, "--out", str(tmp_path / "r"),
         "--set", "task.n=4", "--set", "task.train_size=4", "--set", "model.widths=[8]",
         "--set", "samplers.rejection.n_samples=4096", "--set", "samplers.rejection.chunk_size=256",
         "--set", "samplers.sgd.n_runs=64", "--set", "analysis.plot=false"],
        capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if LINE.match(ln)]
    assert [ln.split(":")[0] for ln in lines if ": done " in ln] == ["rejection", "sgd"]
    assert any(ln.startswith("rejection: done 4,096/4,096 net") for ln in lines)
    assert any(ln.startswith("sgd: done 64/64 run") for ln in lines)
