"""bayes_sgd.results: load a finished folder, refuse an unfinished one, wide and join tables."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bayes_sgd import results

from conftest import shared_tiny_results  # noqa: E402  (shared helper)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return shared_tiny_results(tmp_path_factory)


def _copy(folder, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(folder, dst)
    return dst


def test_load_complete_folder(folder):
    r = results.load(folder)
    assert r.manifest["status"] == "complete"
    assert r.name == "tiny" and r.config["task"]["n"] == 5
    assert set(r.samplers) == {"rejection", "prior", "sgd"}
    assert r.summary["sgd"]["n_runs"] == len(r.runs) == 60
    # the counts agree with the summary
    rej = r.functions[r.functions["sampler"] == "rejection"]
    assert int(rej["count"].sum()) == r.summary["rejection"]["n_accepted"]
    assert len(rej) == r.summary["rejection"]["n_functions"]
    assert "tiny" in repr(r)


@pytest.mark.parametrize("damage", ["running", "no_manifest", "no_functions", "no_runs",
                                    "no_summary", "bad_json"])
def test_load_refuses_incomplete_folder(folder, tmp_path, damage):
    bad = _copy(folder, tmp_path)
    if damage == "running":
        m = json.loads((bad / "manifest.json").read_text())
        m["status"] = "running"
        (bad / "manifest.json").write_text(json.dumps(m))
        match = "not complete.*'running'"
    elif damage == "bad_json":
        (bad / "summary.json").write_text("{")
        match = "summary.json is not valid JSON"
    else:
        name = {"no_manifest": "manifest.json", "no_functions": "functions.parquet",
                "no_runs": "runs.parquet", "no_summary": "summary.json"}[damage]
        (bad / name).unlink()
        match = "no manifest.json" if damage == "no_manifest" else f"{name} is missing"
    with pytest.raises(results.IncompleteResultsError, match=match):
        results.load(bad)


def test_load_missing_folder(tmp_path):
    with pytest.raises(results.IncompleteResultsError, match="no such results folder"):
        results.load(tmp_path / "nope")


def test_wide_one_column_per_sampler(folder):
    r = results.load(folder)
    w = results.wide(r)
    assert list(w.columns) == ["rejection", "sgd"]  # posterior samplers only, not the prior
    df = r.functions
    for s in ("rejection", "sgd"):
        sub = df[df["sampler"] == s].set_index("function")["log10_p"]
        assert w[s].notna().sum() == len(sub)
        np.testing.assert_array_equal(w.loc[sub.index, s].to_numpy(), sub.to_numpy())
    # same from the DataFrame, the folder path, and the method
    pd.testing.assert_frame_equal(w, results.wide(df))
    pd.testing.assert_frame_equal(w, results.wide(str(folder)))
    pd.testing.assert_frame_equal(r.wide("count"), results.wide(df, "count"))


def test_join_rows_labels_and_config_columns(folder, tmp_path):
    other = _copy(folder, tmp_path, "other")
    m = json.loads((other / "manifest.json").read_text())
    m["config"]["samplers"]["sgd"]["optimizer"] = "adam"
    (other / "manifest.json").write_text(json.dumps(m))
    a, b = results.load(folder), results.load(other)
    df = results.join([folder, other], labels=["sgd", "adam"])
    assert len(df) == len(a.functions) + len(b.functions)
    assert list(df.columns[:2]) == ["run", "sampler"]
    assert list(df["run"].cat.categories) == ["sgd", "adam"]
    assert df.groupby("run", observed=True).size().to_dict() == {"sgd": len(a.functions), "adam": len(b.functions)}
    assert set(df.loc[df["run"] == "adam", "optimizer"]) == {"adam"}
    assert set(df["batch_size"]) == {a.config["samplers"]["sgd"]["batch_size"]}
    # default labels: config names, which repeat here, so the folder names
    assert list(results.join([folder, other])["run"].cat.categories) == [folder.name, "other"]
    # wide on a joined table: one column per (run, sampler)
    w = results.wide(df)
    assert set(w.columns) == {(r, s) for r in ("sgd", "adam") for s in ("rejection", "sgd")}
    with pytest.raises(ValueError, match="labels"):
        results.join([folder, other], labels=["x"])
    with pytest.raises(ValueError, match="unique"):
        results.join([folder, other], labels=["x", "x"])


def test_join_reference_shares_missing_samplers(folder, tmp_path):
    sgd_only = _copy(folder, tmp_path, "sgd_only")
    f = pd.read_parquet(sgd_only / "functions.parquet")
    f[f["sampler"] == "sgd"].to_parquet(sgd_only / "functions.parquet", index=False)
    full = results.load(folder).functions
    df = results.join([sgd_only], reference=folder)
    assert sorted(df["sampler"].unique()) == ["prior", "rejection", "sgd"]
    assert len(df) == len(full)  # the sgd rows once, prior and rejection from the reference
    # a reference of another task is refused
    other = _copy(folder, tmp_path, "other_task")
    m = json.loads((other / "manifest.json").read_text())
    m["config"]["task"]["target"] = "and2"
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="different task"):
        results.join([sgd_only], reference=other)


def test_join_runs(folder, tmp_path):
    other = _copy(folder, tmp_path, "other")
    runs = results.join_runs([folder, other], labels=["a", "b"])
    assert len(runs) == 2 * len(results.load(folder).runs)
    assert runs.columns[0] == "run" and set(runs["run"]) == {"a", "b"}
