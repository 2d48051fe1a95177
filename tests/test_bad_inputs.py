"""Bad input through the command line: one line naming the field or file, a non-zero exit
status, no traceback, and no damage to an existing complete results folder (issue 13).

Each case calls ``cli.main(argv)`` in this process (it returns the exit code) with ``--out``
pointing at a copy of a complete results folder made once by a real run; the hashes of every
file in it are compared before and after.  Almost every case fails in config validation,
before any JAX work.  A damaged checkpoint or a folder locked by another process must leave
the finished results as they were.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from bayes_sgd import cli

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

BASE = ["--set", "name='bad-input'", "--set", "task.n=4", "--set", "task.target=and2",
        "--set", "task.train_size=4", "--set", "model.widths=[4]",
        "--set", "samplers.rejection.n_samples=2048", "--set", "samplers.rejection.chunk_size=256",
        "--set", "samplers.sgd.n_runs=8", "--set", "samplers.sgd.max_epochs=50",
        "--set", "analysis.plot=false"]


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A complete results folder of BASE, made by a real (tiny) run."""
    out = tmp_path_factory.mktemp("complete") / "run"
    assert cli.main(["run", QUICK_CONFIG, "--out", str(out), "--quiet", *BASE]) == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    (d / "a_directory.toml").mkdir()
    (d / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    (d / "broken.toml").write_text('name = "x\n[task\n')
    (d / "unknown.toml").write_text('[task]\nn = 4\n[optimiser]\nlr = 0.1\n')
    (d / "wrong_type.toml").write_text('[samplers.nuts]\nnum_chains = "four"\n')
    (d / "array_root.toml").write_text('task = [1, 2]\n')
    (d / "a_file").write_text("not a folder")
    return d


def _hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


S = "--set"
# (id, argv after "run", text the error line must contain)
CASES = [
    ("n_runs 10**12 as text", [S, "samplers.sgd.n_runs=10**12"], "samplers.sgd.n_runs"),
    ("n_runs 10^12", [S, "samplers.sgd.n_runs=1000000000000"], "samplers.sgd.n_runs"),
    ("n_samples 10^12", [S, "samplers.rejection.n_samples=1000000000000"], "samplers.rejection.n_samples"),
    ("n_samples 0", [S, "samplers.rejection.n_samples=0"], "samplers.rejection.n_samples"),
    ("chunks 10^8", [S, "samplers.rejection.n_samples=100000000", S, "samplers.rejection.chunk_size=1"],
     "samplers.rejection.chunk_size"),
    ("lr inf", [S, "samplers.sgd.lr=inf"], "samplers.sgd.lr"),
    ("lr -inf", [S, "samplers.sgd.lr=-inf"], "samplers.sgd.lr"),
    ("lr nan", [S, "samplers.sgd.lr=nan"], "samplers.sgd.lr"),
    ("lr negative", [S, "samplers.sgd.lr=-1"], "samplers.sgd.lr"),
    ("lr text", [S, "samplers.sgd.lr=fast"], "samplers.sgd.lr"),
    ("sigma_w inf", [S, "model.sigma_w=inf"], "model.sigma_w"),
    ("momentum 2", [S, "samplers.sgd.momentum=2"], "samplers.sgd.momentum"),
    ("max_epochs 0", [S, "samplers.sgd.max_epochs=0"], "samplers.sgd.max_epochs"),
    ("max_epochs 10^9", [S, "samplers.sgd.max_epochs=1000000000"], "samplers.sgd.max_epochs"),
    ("optimizer", [S, "samplers.sgd.optimizer=lbfgs"], "samplers.sgd.optimizer"),
    ("target random:-1", [S, "task.target=random:-1"], "task.target"),
    ("target random:x", [S, "task.target=random:x"], "task.target"),
    ("target length", [S, "task.target=0101"], "task.target"),
    ("target unknown preset", [S, "task.target=and9"], "task.target"),
    ("n 20", [S, "task.n=20"], "task.n"),
    ("n 0", [S, "task.n=0"], "task.n"),
    ("train_size 0", [S, "task.train_size=0"], "task.train_size"),
    ("train_size all inputs", [S, "task.train_size=16"], "task.train_size"),
    ("train_mask length", [S, "task.train_mask=0101"], "task.train_mask"),
    ("widths empty", [S, "model.widths=[]"], "model.widths"),
    ("widths 0", [S, "model.widths=[0]"], "model.widths"),
    ("widths 10^6", [S, "model.widths=[1000000]"], "model.widths"),
    ("activation", [S, "model.activation=gelu"], "model.activation"),
    ("cnn on boolean", [S, "model.arch=cnn"], "model.arch"),
    ("nuts with cnn", [S, "task.kind=image", S, "model.arch=cnn", S, "samplers.nuts.enabled=true"],
     "samplers.nuts.enabled"),
    ("gp mc_samples 1", [S, "samplers.gp.mc_samples=1"], "samplers.gp.mc_samples"),
    ("gp boolean n 13", [S, "samplers.gp.enabled=true", S, "task.n=13"], "samplers.gp.enabled"),
    ("gp exact 32 dims", [S, "samplers.gp.enabled=true", S, "samplers.gp.method=exact", S,
                          "task.n=5"], "samplers.gp.method"),
    ("nuts thin", [S, "samplers.nuts.enabled=true", S, "samplers.nuts.num_samples=4", S,
                   "samplers.nuts.thin=5"], "samplers.nuts.thin"),
    ("cnn kernel too big", [S, "task.kind=image", S, "model.arch=cnn"], "model.kernel_sizes[2]"),
    ("nuts beta 0", [S, "samplers.nuts.beta=0"], "samplers.nuts.beta"),
    ("output_draws with record_prior", [S, "samplers.rejection.output_draws=2", S,
                                        "samplers.rejection.record_prior=true"],
     "samplers.rejection.output_draws"),
    ("no sampler", [S, "samplers.rejection.enabled=false", S, "samplers.sgd.enabled=false"],
     "samplers"),
    ("unknown field", [S, "samplers.sgd.foo=1"], "samplers.sgd.foo"),
    ("set without =", [S, "samplers.sgd.lr"], "--set"),
    ("table set to a number", [S, "task=5"], "task"),
    ("seed negative", [S, "seed=-1"], "seed"),
    ("seed beyond 64 bits", [S, "seed=18446744073709551616"], "seed"),
    ("name with a path", [S, "name=../../etc"], "name"),
    ("name empty", [S, "name="], "name"),
    ("set with an empty field", [S, "task..n=3"], "--set"),
    ("binarize", [S, "task.kind=image", S, "task.binarize=threshold:x"], "task.binarize"),
    ("widths not a list", [S, "model.widths=4"], "model.widths"),
    ("config is a directory", ["{files}/a_directory.toml"], "a_directory.toml"),
    ("config missing", ["{files}/missing.toml"], "missing.toml"),
    ("config not UTF-8", ["{files}/latin1.toml"], "latin1.toml"),
    ("config not TOML", ["{files}/broken.toml"], "broken.toml"),
    ("config unknown section", ["{files}/unknown.toml"], "optimiser"),
    ("config wrong type", ["{files}/wrong_type.toml"], "samplers.nuts.num_chains"),
    ("config table is an array", ["{files}/array_root.toml"], "task"),
    ("scheduler port", ["--scheduler", "tcp://127.0.0.1:99999"], "--scheduler"),
    ("scheduler local:0", ["--scheduler", "local:0"], "--scheduler"),
    ("scheduler words", ["--scheduler", "my laptop"], "--scheduler"),
    ("out is a file", ["--out", "{files}/a_file"], "--out"),
    ("mnist missing", [S, "task.kind=image", S, "model.arch=fcn", S, "task.dataset=mnist", S,
                       "task.data_path={files}/no_mnist_here"], "task.data_path"),
    ("digits with a path", [S, "task.kind=image", S, "task.dataset=digits", S,
                            "task.data_path={files}"], "task.data_path"),
    ("cifar without a path", [S, "task.kind=image", S, "task.dataset=cifar10"], "task.data_path"),
    ("digits too few for S", [S, "task.kind=image", S, "task.dataset=digits", S,
                              "task.train_size=1790"], "task.train_size: expected <= N - test_size"),
    ("different config in --out", [S, "seed=1"], "--out"),
]
ENV_CASES = [  # (id, variable, value)
    ("checkpoint seconds", "BAYES_SGD_CHECKPOINT_SECONDS", "soon"),
    ("progress seconds", "BAYES_SGD_PROGRESS_SECONDS", "-1"),
    ("scheduler timeout", "BAYES_SGD_SCHEDULER_TIMEOUT", "0"),
]


def _run(argv, complete, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(complete, out)
    before = _hashes(out)
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    # the small fixed config, unless the case gives its own config file first
    config = [] if not argv[0].startswith("-") else [QUICK_CONFIG]
    code = cli.main(["run", *config, "--quiet", *BASE, *argv])
    err = capsys.readouterr().err
    return code, err, before, _hashes(out)


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line(argv, expected, complete, files, tmp_path, capsys):
    argv = [a.replace("{files}", str(files)) for a in argv]
    code, err, before, after = _run(argv, complete, tmp_path, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-sgd: error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err
    assert after == before  # the complete folder is untouched


@pytest.mark.parametrize("var, value", [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_bad_environment_gets_one_line(var, value, complete, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(var, value)
    code, err, before, after = _run(["--scheduler", "tcp://127.0.0.1:1"]
                                    if "SCHEDULER" in var else [], complete, tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1 and var in err and "Traceback" not in err
    assert after == before


def test_table_size():
    assert len(CASES) + len(ENV_CASES) + len(DAMAGED) >= 40


# ---- fixed on branch issue-12 ------------------------------------------------------------------

def _truncate(path: Path):
    with open(path, "r+b") as f:
        f.truncate(100)


def _random_bytes(path: Path):
    path.write_bytes(bytes(range(256)) * 4)


DAMAGED = [("truncated rejection.npz", "rejection.npz", _truncate),
           ("random bytes in sgd.npz", "sgd.npz", _random_bytes)]


@pytest.mark.parametrize("name, damage", [c[1:] for c in DAMAGED], ids=[c[0] for c in DAMAGED])
def test_damaged_checkpoint_never_destroys_results(name, damage, complete, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(complete, out)
    damage(out / "checkpoints" / name)
    results = {k: v for k, v in _hashes(out).items() if not k.startswith("checkpoints")}
    try:
        code = cli.main(["run", QUICK_CONFIG, "--quiet", *BASE, "--out", str(out)])
    finally:
        err = capsys.readouterr().err
    assert "Traceback" not in err
    if code != 0:
        assert name in err and err.count("\n") == 1
    after = {k: v for k, v in _hashes(out).items() if not k.startswith("checkpoints")}
    assert after == results


@pytest.mark.parametrize("holder", ["live process", "unreadable lock"])
def test_locked_folder_is_refused(holder, complete, tmp_path, capsys):
    """A second writer gets one line naming the lock and changes nothing (the parent of this
    process is alive on this host, so its lock is not stale; an unreadable lock is refused
    rather than guessed at)."""
    import json
    import os
    import socket

    out = tmp_path / "out"
    shutil.copytree(complete, out)
    text = (json.dumps({"pid": os.getppid(), "host": socket.gethostname()})
            if holder == "live process" else "{not json")
    (out / ".lock").write_text(text)
    before = _hashes(out)
    code = cli.main(["run", QUICK_CONFIG, "--quiet", *BASE, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "in use by" in err and ".lock" in err
    assert _hashes(out) == before
