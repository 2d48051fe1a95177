"""Reproducibility: same seed and config give identical counts; `reproduce` lists, validates,
reports missing data clearly, and draws a (tiny) figure end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bayes_sgd import plotting, results
from bayes_sgd.config import load_config
from bayes_sgd.reproduce import FIGURES, TARGETS_N7, figure_configs, reproduce

from conftest import TINY, shared_tiny_results  # noqa: E402  (shared helper)


def test_same_seed_and_config_give_identical_counts(tmp_path, tmp_path_factory):
    from bayes_sgd.experiment import run_experiment

    one = shared_tiny_results(tmp_path_factory)  # built by whichever test came first
    s2 = run_experiment(load_config(None, TINY), tmp_path / "two", show_progress=False)
    f1 = pd.read_parquet(one / "functions.parquet")
    f2 = pd.read_parquet(tmp_path / "two" / "functions.parquet")
    assert len(f1) > 10 and set(f1["sampler"]) == {"rejection", "prior", "sgd"}
    pd.testing.assert_frame_equal(f1, f2, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(one / "runs.parquet"),
                                  pd.read_parquet(tmp_path / "two" / "runs.parquet"),
                                  check_exact=True)
    s1 = json.loads((one / "summary.json").read_text())
    assert s1["agreement"] == json.loads(json.dumps(s2["agreement"]))


def test_list_names_every_figure(capsys):
    assert reproduce("list") == 0
    out = capsys.readouterr().out
    for name, fig in FIGURES.items():
        assert name in out and fig.config in out
    assert {"prior_n7", "targets_n7", "batch_n7", "optimisers_n7", "overtraining_n7",
            "images"} <= set(FIGURES)


def test_unknown_figure_and_scale(capsys):
    assert reproduce("nope") == 2
    assert "expected one of" in capsys.readouterr().err
    assert reproduce("prior_n7", scale="huge") == 2


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_config_validates_at_both_scales(name):
    quick = figure_configs(name, scale="quick")
    paper = figure_configs(name, scale="paper")
    fig = FIGURES[name]
    assert list(paper) == [r.name for r in fig.runs]
    assert list(quick) == [r.name for r in fig.runs if r.name not in fig.paper_only]
    assert quick and set(fig.paper_only) <= set(paper)
    for run, cfg in quick.items():
        assert cfg.name == f"{name}_{run}"  # distinct names: distinct folders and join labels
        p = paper[run]
        assert p.samplers.sgd.n_runs >= cfg.samplers.sgd.n_runs
        assert p.samplers.rejection.n_samples >= cfg.samplers.rejection.n_samples
        assert p != cfg
    if fig.reference:  # the shared P_B run is rejection-only, the others SGD-only
        assert not quick[fig.reference].samplers.sgd.enabled
        assert all(not c.samplers.rejection.enabled for r, c in quick.items() if r != fig.reference)
        tasks = {json.dumps(c.task.__dict__, sort_keys=True) for c in quick.values()}
        assert len(tasks) == 1


def test_quick_configs_match_the_package_files():
    from bayes_sgd.reproduce import config_path

    for fig in FIGURES.values():
        path = config_path(fig)
        assert path.exists(), path
        cfg = load_config(path)  # the file alone is a valid experiment
        assert cfg.name == fig.name


def test_targets_have_increasing_complexity_and_similar_P_S():
    from bayes_sgd.complexity import lz_complexity
    from bayes_sgd.tasks import parse_target, train_mask

    in_s = train_mask(7, train_size=16, seed=0)
    clz, on_s = [], set()
    for t in TARGETS_N7.values():
        table = parse_target(t, 7)
        assert table.sum() == 8 and table[in_s].sum() == 1
        clz.append(lz_complexity(table))
        on_s.add("".join(map(str, table[in_s])))
    assert clz == sorted(clz) and clz == [21.0, 31.5, 45.5, 70.0]
    # the networks see only S: the targets must differ there, or the panels are one experiment
    assert len(on_s) == len(TARGETS_N7)
    cfgs = figure_configs("targets_n7")
    assert [c.task.target for c in cfgs.values()] == list(TARGETS_N7.values())


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = reproduce("images", out=tmp_path / "out", quiet=True,
                     overrides=[f"task.data_path={empty}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "images/mnist_fcn" in err and "not found" in err
    assert not (tmp_path / "out" / "images").exists()  # nothing started


def test_tiny_figure_end_to_end(tmp_path, capsys):
    ov = ["task.n=5", "task.train_size=8", "model.widths=[8]", "samplers.rejection.n_samples=20000"]
    assert reproduce("prior_n7", out=tmp_path, quiet=True, overrides=ov) == 0
    fig_dir = tmp_path / "prior_n7"
    assert (fig_dir / "prior_n7.png").stat().st_size > 10_000
    report = json.loads((fig_dir / "prior_n7.json").read_text())
    m = report["metrics"]["prior"]
    df = results.load(fig_dir / "prior").functions
    slope, _ = plotting.rank_fit(df, "prior")
    assert m["rank_slope_all"] == pytest.approx(slope, abs=1e-3)
    zslope, _, n_res = plotting.zipf_fit(df, "prior", min_count=10)
    assert m["rank_slope_seen_10_times"] == pytest.approx(zslope, abs=1e-3)
    assert m["n_functions_seen_10_times"] == n_res == (df.loc[df.sampler == "prior", "count"] >= 10).sum()
    assert m["n_samples"] == 20000 and m["n_functions"] == (df["sampler"] == "prior").sum()
    assert m["rank_slope_seen_10_times"] < 0 and m["bound_slope_per_C_LZ_seen_10_times"] < 0
    capsys.readouterr()
    # a second call skips the complete run and redraws
    assert reproduce("prior_n7", out=tmp_path, overrides=ov) == 0
    assert "complete, skipped" in capsys.readouterr().out
    # another config into the same folder is refused, not mixed
    assert reproduce("prior_n7", out=tmp_path, quiet=True,
                     overrides=[*ov, "samplers.rejection.n_samples=30000"]) == 2
    assert "different config" in capsys.readouterr().err
