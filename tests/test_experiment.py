"""run_experiment end to end on a tiny config: the results folder, its files checked against
independent recomputations, resume, and refusal of a folder that cannot or must not be used.

Config: n = 5, target and3, |S| = 6 (train_seed 0), FCN 5-8-1; rejection 20,000 prior draws in
chunks of 1,024 (20 chunks, the last one partial) with the prior recorded; 64 SGD runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import struct

import numpy as np
import pandas as pd
import pytest

from bayes_sgd import experiment
from bayes_sgd.samplers import _rejection_runner
from bayes_sgd.complexity import lz_complexity
from bayes_sgd.config import config_from_dict, load_config
from bayes_sgd.experiment import Interrupted, ResultsFolderError, run_experiment
from bayes_sgd.function_table import COLUMNS

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)

OVERRIDES = [
    "name='tiny'", "seed=3", "task.n=5", "task.target=and3", "task.train_size=6",
    "model.widths=[8]", "samplers.rejection.n_samples=20000",
    "samplers.rejection.chunk_size=1024", "samplers.rejection.record_prior=true",
    "samplers.sgd.n_runs=64", "samplers.sgd.max_epochs=200", "samplers.sgd.batch_size=4",
]


@pytest.fixture(scope="module")
def cfg():
    return load_config(QUICK_CONFIG, OVERRIDES)


@pytest.fixture(scope="module")
def run_a(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "a"
    summary = run_experiment(cfg, out, show_progress=False)
    return out, summary


def _and3_table(n=5):
    return [int(all((i >> (n - 1 - j)) & 1 for j in range(3))) for i in range(2**n)]


def test_functions_parquet(run_a, cfg):
    out, summary = run_a
    df = pd.read_parquet(out / "functions.parquet")
    assert list(df.columns) == COLUMNS
    assert set(df["sampler"]) == {"rejection", "prior", "sgd"}
    mask = summary["task"]["train_mask"]
    s_idx = [i for i, c in enumerate(mask) if c == "1"]
    e_idx = [i for i, c in enumerate(mask) if c == "0"]
    assert len(s_idx) == 6 and len(e_idx) == 26
    table = _and3_table()
    target_e = "".join(str(table[i]) for i in e_idx)
    assert summary["task"]["target_on_E"] == target_e
    for sampler, g in df.groupby("sampler"):
        assert g["p"].sum() == pytest.approx(1.0, abs=1e-12)
        assert (g["count"] == g["count_half0"] + g["count_half1"]).all()
        np.testing.assert_allclose(g["p"], g["count"] / g["count"].sum(), rtol=1e-12)
        np.testing.assert_allclose(g["log10_p"], np.log10(g["p"]), rtol=1e-12)
        assert g["function"].is_unique
        assert (g["ones"] == g["function"].str.count("1")).all()
    r = df[df["sampler"] == "rejection"]
    assert r["count"].sum() == summary["rejection"]["n_accepted"]
    assert df.loc[df["sampler"] == "prior", "count"].sum() == summary["rejection"]["n_samples"] == 20000
    assert df.loc[df["sampler"] == "sgd", "count"].sum() == summary["sgd"]["n_fitted"]
    assert len(r) == summary["rejection"]["n_functions"]
    # lz and test error of a few posterior rows, from the full table built by hand
    rows = pd.concat([r.nlargest(4, "count"), df[df["sampler"] == "sgd"].head(4)])
    for _, row in rows.iterrows():
        f = row["function"]
        assert len(f) == 26
        full = list(table)
        for pos, bit in zip(e_idx, f):
            full[pos] = int(bit)
        assert row["lz"] == lz_complexity("".join(map(str, full)))
        assert row["test_error"] == pytest.approx(sum(a != b for a, b in zip(f, target_e)) / 26, abs=1e-15)
    # prior rows: 32-bit tables, lz of the table itself, no test error
    pr = df[df["sampler"] == "prior"].head(5)
    for _, row in pr.iterrows():
        assert len(row["function"]) == 32 and row["lz"] == lz_complexity(row["function"])
    assert df.loc[df["sampler"] == "prior", "test_error"].isna().all()
    # the prior mass of tables that agree with the target on S is the accepted count
    prior = df[df["sampler"] == "prior"]
    agrees = prior["function"].map(lambda t: all(int(t[i]) == table[i] for i in s_idx))
    assert prior.loc[agrees, "count"].sum() == summary["rejection"]["n_accepted"]


def test_prior_streamed_in_batches_equals_one_table(run_a, cfg, tmp_path, monkeypatch):
    """functions.parquet gets the prior's table in batches (bounded memory): with batches of 5
    functions it must hold exactly the rows of run_a, written from one batch."""
    real = experiment.counter_frames
    calls = []

    order = []

    def small(*a, **k):
        for frame in real(*a, batch=5, **k):
            calls.append(len(frame))
            order.append("batch")
            yield frame

    import pyarrow.parquet as pq
    write = pq.ParquetWriter.write_table

    def logged(self, table, *a, **k):
        order.append("write")
        return write(self, table, *a, **k)

    monkeypatch.setattr(experiment, "counter_frames", small)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", logged)
    run_experiment(cfg, tmp_path / "b", show_progress=False)
    # lazily: each batch is written before the next one is made (one batch in memory)
    seq = ",".join(order)
    assert seq.count("batch") == len(calls) > 1 and "batch,batch" not in seq
    assert seq.count("batch,write") == len(calls)
    a = pd.read_parquet(run_a[0] / "functions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "functions.parquet")
    n_prior = (a["sampler"] == "prior").sum()
    assert len(calls) == -(-n_prior // 5) and max(calls) == 5 and sum(calls) == n_prior
    key = ["sampler", "function"]
    pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True),
                                  b.sort_values(key, ignore_index=True))


def test_runs_parquet(run_a, cfg):
    out, summary = run_a
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs.columns) == ["run_id", "fitted", "epochs_to_fit", "epochs_trained", "diverged"]
    assert runs["run_id"].tolist() == list(range(64))
    assert (runs["epochs_to_fit"].isna() == ~runs["fitted"]).all()
    fit = runs[runs["fitted"]]
    assert (fit["epochs_to_fit"] == fit["epochs_trained"]).all()  # epochs_after_fit = 0
    assert (fit["epochs_to_fit"] <= cfg.samplers.sgd.max_epochs).all()
    s = summary["sgd"]
    assert s["n_runs"] == 64 and s["n_fitted"] == int(runs["fitted"].sum())
    assert s["n_fitted"] + s["n_not_fitted"] + s["n_diverged"] == 64
    assert s["epochs_to_fit_median"] == float(fit["epochs_to_fit"].median())


def test_manifest_and_summary(run_a, cfg):
    out, summary = run_a
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete"
    assert config_from_dict(man["config"]) == cfg
    assert man["seeds"]["master"] == 3 and man["seeds"]["task_split"] == 0
    assert "finished" in man and "resumed" not in man
    assert man["totals"]["rejection"]["n_samples"] == 20000
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    rej = on_disk["rejection"]
    assert rej["acceptance_rate"] == rej["n_accepted"] / 20000
    assert rej["log10_P_S_sampled"] == pytest.approx(math.log10(rej["n_accepted"] / 20000))
    ag = on_disk["agreement"]
    assert set(ag["pairs"]) == {"sgd_vs_rejection"}
    assert set(ag["split_half"]) == {"rejection", "sgd"}
    for by_k in [ag["pairs"]["sgd_vs_rejection"], *ag["split_half"].values()]:
        assert set(by_k) == {"k=2", "k=5", "k=10"}
        for r in by_k.values():
            assert set(r) == {"with_target", "without_target"}
    # recompute two entries from functions.parquet, independently of bayes_sgd.analysis
    df = pd.read_parquet(out / "functions.parquet")
    target = on_disk["task"]["target_on_E"]
    rj = df[df["sampler"] == "rejection"].set_index("function")
    sg = df[df["sampler"] == "sgd"].set_index("function")
    for k in (2, 5, 10):
        both = [f for f in rj.index.intersection(sg.index) if rj.at[f, "count"] >= k and sg.at[f, "count"] >= k]
        assert ag["pairs"]["sgd_vs_rejection"][f"k={k}"]["with_target"]["n_functions"] == len(both)
        assert (ag["pairs"]["sgd_vs_rejection"][f"k={k}"]["without_target"]["n_functions"]
                == len([f for f in both if f != target]))
        h0, h1 = rj["count_half0"].astype(float), rj["count_half1"].astype(float)
        kh = math.ceil(k / 2)
        keep = (h0 >= kh) & (h1 >= kh)
        got = ag["split_half"]["rejection"][f"k={k}"]["with_target"]
        assert got["n_functions"] == int(keep.sum())
        if keep.sum() >= 3:
            want = np.corrcoef(np.log10(h0[keep] / h0.sum()), np.log10(h1[keep] / h1.sum()))[0, 1]
            assert got["pearson"] == pytest.approx(want, rel=1e-9)
    assert ag["split_half"]["rejection"]["k=2"]["with_target"]["n_functions"] >= 10  # non-trivial


def test_scatter_png(run_a):
    data = (run_a[0] / "scatter.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert data[-8:-4] == b"IEND"
    import matplotlib.image
    img = matplotlib.image.imread(run_a[0] / "scatter.png")
    assert img.shape[:2] == (height, width)
    assert not (run_a[0] / ".scatter.png.tmp").exists()


def test_rerun_same_config_resumes_without_work(run_a, cfg, monkeypatch):
    out, _ = run_a
    before = {name: pd.read_parquet(out / name) for name in ("functions.parquet", "runs.parquet")}

    def no_work(*a, **k):
        raise AssertionError("a complete run was recomputed")

    monkeypatch.setattr(_rejection_runner, "run_rejection_chunks", no_work)
    monkeypatch.setattr(experiment.SGDTrainer, "run", no_work)
    summary = run_experiment(cfg, out, show_progress=False)
    for name, df in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), df)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and "resumed" in man
    assert summary["rejection"]["n_accepted"] == before["functions.parquet"].query(
        "sampler == 'rejection'")["count"].sum()


def test_different_config_same_folder_is_refused(run_a, cfg):
    out, _ = run_a
    before = (out / "manifest.json").read_text()
    other = load_config(QUICK_CONFIG, OVERRIDES + ["seed=4"])
    with pytest.raises(ResultsFolderError, match="different config"):
        run_experiment(other, out, show_progress=False)
    assert (out / "manifest.json").read_text() == before
    assert (out / "functions.parquet").exists()


def test_same_seed_same_counts_in_a_second_folder_after_interrupt_and_resume(run_a, cfg, tmp_path,
                                                                             monkeypatch):
    """Folder b is interrupted after the first 8 rejection chunks (SIGTERM is turned into
    Interrupted), then resumed; its tables must equal folder a's exactly."""
    out_b = tmp_path / "b"
    real = _rejection_runner.run_rejection_chunks
    calls = []

    def interrupt_second_batch(*a, **k):
        calls.append(list(a[2]))
        if len(calls) == 2:
            raise Interrupted("SIGTERM")
        return real(*a, **k)

    monkeypatch.setattr(_rejection_runner, "run_rejection_chunks", interrupt_second_batch)
    with pytest.raises(Interrupted, match="rerun the same command to resume"):
        run_experiment(cfg, out_b, show_progress=False)
    assert calls[0] == list(range(8))
    assert json.loads((out_b / "manifest.json").read_text())["status"] == "running"
    assert not (out_b / "functions.parquet").exists()
    ck = np.load(out_b / "checkpoints" / "rejection.npz")
    assert ck["done_chunks"].tolist() == list(range(8)) and int(ck["n_samples"]) == 8 * 1024

    monkeypatch.setattr(_rejection_runner, "run_rejection_chunks", real)
    run_experiment(cfg, out_b, show_progress=False)
    for name in ("functions.parquet", "runs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out_b / name), pd.read_parquet(run_a[0] / name))
    a = json.loads((run_a[0] / "summary.json").read_text())
    b = json.loads((out_b / "summary.json").read_text())
    assert a["agreement"] == b["agreement"]
    for key in ("n_samples", "n_accepted", "n_functions"):
        assert a["rejection"][key] == b["rejection"][key]


def _must_not_run(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("work started before the folder was checked")
    from bayes_sgd.samplers import RejectionSampler, SGDSampler
    monkeypatch.setattr(RejectionSampler, "run", boom)
    monkeypatch.setattr(SGDSampler, "run", boom)


def test_path_under_a_file_fails_before_work(cfg, tmp_path, monkeypatch):
    _must_not_run(monkeypatch)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ResultsFolderError, match=r"file\.txt.*cannot be written"):
        run_experiment(cfg, f / "results", show_progress=False)
    with pytest.raises(ResultsFolderError, match="cannot be written"):
        run_experiment(cfg, f, show_progress=False)
    assert f.read_text() == "x"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions, so chmod 500 cannot make it unwritable")
def test_unwritable_parent_fails_before_work(cfg, tmp_path, monkeypatch):
    _must_not_run(monkeypatch)
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ResultsFolderError, match="cannot be written"):
            run_experiment(cfg, parent / "results", show_progress=False)
        # an existing folder without write permission, too
        parent.chmod(0o700)
        (parent / "results").mkdir()
        (parent / "results").chmod(0o500)
        with pytest.raises(ResultsFolderError, match="cannot be written"):
            run_experiment(cfg, parent / "results", show_progress=False)
    finally:
        parent.chmod(0o700)
        if (parent / "results").exists():
            (parent / "results").chmod(0o700)


def test_permission_error_is_reported_before_work(cfg, tmp_path, monkeypatch):
    """The same path as the chmod test, runnable as root: the write probe fails with EACCES."""
    _must_not_run(monkeypatch)
    import errno
    import pathlib
    real = pathlib.Path.write_text

    def denied(self, *a, **k):
        if self.name == ".write-test":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", denied)
    with pytest.raises(ResultsFolderError, match=r"cannot be written \(Permission denied\)"):
        run_experiment(cfg, tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_corrupt_manifest_is_refused(cfg, tmp_path, monkeypatch):
    _must_not_run(monkeypatch)
    out = tmp_path / "c"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ResultsFolderError, match="corrupt"):
        run_experiment(cfg, out, show_progress=False)


def test_bad_task_fails_before_the_folder_is_created(tmp_path, monkeypatch):
    _must_not_run(monkeypatch)
    with pytest.raises(ValueError, match="task.target: expected a truth table of 2\\^5 = 32"):
        load_config(QUICK_CONFIG, OVERRIDES + ["task.target='0101'"])
    # a Config changed after validation is checked again when the task is built
    good = load_config(QUICK_CONFIG, OVERRIDES)
    bad = dataclasses.replace(good, task=dataclasses.replace(good.task, target="0101"))
    with pytest.raises(ValueError, match="task.target"):
        run_experiment(bad, tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()
