"""An unreachable, refusing or malformed ``--scheduler`` gets one line naming the address,
within the connect timeout, and leaves a folder that the same command resumes (issue 13,
item 5).  Only loopback is ever contacted: other addresses are checked for format alone."""
from __future__ import annotations

import json
import time

import pytest

from bayes_sgd import cli
from bayes_sgd.distributed import (CONNECT_SECONDS, SchedulerError, check_scheduler_address,
                                   connect_seconds)

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

pytest.importorskip("distributed")

GOOD = ["tcp://127.0.0.1:8786", "tcp://192.0.2.1:8786", "tls://scheduler.example.org:8786",
        "127.0.0.1:8786", "tcp://[::1]:8786", "local", "local:2"]
BAD = ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1", "http://127.0.0.1:8786",
       "tcp://:8786", "local:0", "local:two", "my laptop", "", "tcp://host name:1"]


@pytest.mark.parametrize("address", GOOD)
def test_well_formed_addresses_pass(address):
    assert check_scheduler_address(address) == address


@pytest.mark.parametrize("address", BAD)
def test_malformed_addresses_are_named(address):
    with pytest.raises(SchedulerError, match="--scheduler"):
        check_scheduler_address(address)


def test_connect_timeout_is_under_30_s(monkeypatch):
    assert CONNECT_SECONDS < 30
    monkeypatch.setenv("BAYES_SGD_SCHEDULER_TIMEOUT", "2.5")
    assert connect_seconds() == 2.5


def test_a_refusing_scheduler_gets_one_line_and_the_folder_resumes(tmp_path, capsys,
                                                                    monkeypatch):
    """A closed loopback port: Dask retries until the timeout (2 s here), then one line."""
    monkeypatch.setenv("BAYES_SGD_SCHEDULER_TIMEOUT", "2")
    out = tmp_path / "r"
    argv = ["run", QUICK_CONFIG, "--quiet", "--out", str(out), "--set", "task.n=4", "--set",
            "task.train_size=4", "--set", "model.widths=[4]", "--set",
            "samplers.rejection.n_samples=1024", "--set", "samplers.rejection.chunk_size=256",
            "--set", "samplers.sgd.enabled=false", "--set", "analysis.plot=false"]
    t0 = time.monotonic()
    code = cli.main([*argv, "--scheduler", "tcp://127.0.0.1:1"])
    dt = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2 and dt < 30, (code, dt, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0] and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"
    # the same command without the scheduler finishes the folder
    assert cli.main(argv) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rejection"]["n_samples"] == 1024
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
