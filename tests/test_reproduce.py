"""Reproducibility: same seed and config give identical counts; `reproduce` lists, validates,
reports missing data clearly, and draws a (tiny) figure end to end."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bayes_sgd import plotting, results
from bayes_sgd.config import load_config
from bayes_sgd.reproduce import FIGURES, TARGETS_N7, figure_configs, reproduce

from conftest import QUICK_CONFIG, TINY, shared_tiny_results  # noqa: E402  (shared helper)


def test_same_seed_and_config_give_identical_counts(tmp_path, tmp_path_factory):
    from bayes_sgd.experiment import run_experiment

    one = shared_tiny_results(tmp_path_factory)  # built by whichever test came first
    s2 = run_experiment(load_config(QUICK_CONFIG, TINY), tmp_path / "two", show_progress=False)
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
    assert list(paper) == [r.name for r in fig.runs_at("paper")]
    assert list(quick) == [r.name for r in fig.runs if r.name not in fig.paper_only]
    assert quick and set(fig.paper_only) <= set(paper)
    for run, cfg in quick.items():
        assert cfg.name == f"{name}_{run}"  # distinct names: distinct folders and join labels
        if run not in paper:  # the paper's runs differ (e.g. its seven targets)
            continue
        p = paper[run]
        assert p.samplers.sgd.n_runs >= cfg.samplers.sgd.n_runs
        assert p.samplers.rejection.n_samples >= cfg.samplers.rejection.n_samples
        assert p != cfg
    for run, p in paper.items():
        assert p.name == f"{name}_{run}"
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


# The paper's n = 7 settings as read from the authors' scripts (docs/paper_settings.md): 0/1
# inputs, all 128 of them, FCN 7-40-40-1 ReLU, sigma_w = sigma_b = 1, |S| = 32, plain SGD
# lr 0.01 batch 8 with BCE, stop at the first epoch with 100 % training accuracy.
@pytest.mark.parametrize("name", [n for n, f in FIGURES.items()
                                  if f.n7 and f.paper_config and f.kind != "sensitivity"])
def test_paper_scale_uses_the_papers_settings(name):
    from bayes_sgd.reproduce import config_path

    fig = FIGURES[name]
    assert fig.paper_config and config_path(fig, "paper").exists()
    alone = load_config(config_path(fig, "paper"))  # the file alone is a valid experiment
    assert alone.name == f"paper_{name}"
    for run, c in figure_configs(name, scale="paper").items():
        t, m = c.task, c.model
        assert (t.n, t.encoding, t.drop_zero_input) == (7, "binary", False)
        assert t.train_mask.count("1") == 32 and len(t.train_mask) == 128
        assert (m.arch, m.widths, m.activation, m.sigma_w, m.sigma_b) == \
            ("fcn", [40, 40], "relu", 1.0, 1.0)
        if fig.kind == "prior":
            assert c.samplers.rejection.record_prior and c.samplers.rejection.n_samples == 10**8
            continue
        sgd = c.samplers.sgd
        if sgd.enabled:
            assert sgd.n_runs == 100_000 and sgd.loss == "bce" and sgd.max_epochs == 5000
            if name != "batch_n7":
                assert sgd.batch_size == 8
            if name != "optimisers_n7":
                assert (sgd.optimizer, sgd.lr) == ("sgd", 0.01)
            if name != "overtraining_n7":
                assert sgd.epochs_after_fit == 0
        if c.samplers.rejection.enabled:  # the cross-check: >= 1e9 prior samples
            assert c.samplers.rejection.n_samples >= 10**9
        assert c.samplers.gp.enabled and c.samplers.gp.method == "ep"
    paper = figure_configs(name, scale="paper")
    if name == "batch_n7":
        assert [c.samplers.sgd.batch_size for r, c in paper.items() if r != "bayes"] == [1, 8, 32]
    if name == "optimisers_n7":  # Keras's default learning rate for the non-SGD optimisers
        assert [(c.samplers.sgd.optimizer, c.samplers.sgd.lr) for r, c in paper.items()
                if r != "bayes"] == [("sgd", 0.01), ("adam", 0.001), ("adagrad", 0.001),
                                     ("rmsprop", 0.001)]
    if name == "overtraining_n7":
        assert [c.samplers.sgd.epochs_after_fit for r, c in paper.items() if r != "bayes"] == [0, 64]


# The image figure's sizes: quick, per dataset as chosen from the GP (README, "Image figure (f)");
# paper, the authors' |S| = 10,000, |E| = 100 on both datasets (docs/paper_settings.md), which
# the quick per-dataset overrides must not reach.
@pytest.mark.parametrize("scale, sizes", [
    ("quick", {"mnist_fcn": ("mnist", 200, 18), "fashion_fcn": ("fashion-mnist", 100, 50)}),
    ("paper", {r: (d, 10_000, 100) for r, d in (("mnist_fcn", "mnist"), ("mnist_cnn", "mnist"),
                                                ("fashion_fcn", "fashion-mnist"),
                                                ("fashion_cnn", "fashion-mnist"))}),
])
def test_image_figure_sizes(scale, sizes):
    got = {r: (c.task.dataset, c.task.train_size, c.task.test_size)
           for r, c in figure_configs("images", scale=scale).items()}
    assert got == sizes


def test_paper_targets_are_the_authors_seven():
    from bayes_sgd.complexity import lz_complexity
    from bayes_sgd.reproduce import PAPER_TARGETS_N7
    from bayes_sgd.tasks import parse_target

    assert len(PAPER_TARGETS_N7) == 7
    # the authors' own C_LZ of target 0 is in their file name "abi_sample_0_35.0_..."
    assert lz_complexity(PAPER_TARGETS_N7["t0"][0]) == 35.0
    for name, (table, mask, clz) in PAPER_TARGETS_N7.items():
        assert len(table) == 128 and len(mask) == 128 and mask.count("1") == 32
        assert lz_complexity(parse_target(table, 7)) == clz
    # ones of each target, and ones of it in S (docs/paper_settings.md)
    ones = {k: (t.count("1"), sum(t[i] == "1" for i in range(128) if m[i] == "1"))
            for k, (t, m, _) in PAPER_TARGETS_N7.items()}
    assert ones == {"t0": (3, 2), "t1": (123, 31), "t2": (120, 29), "t3": (96, 21),
                    "t4": (16, 5), "t5": (96, 22), "t6": (64, 17)}
    cfgs = figure_configs("targets_n7", scale="paper")
    assert [(c.task.target, c.task.train_mask) for c in cfgs.values()] == \
        [(t, m) for t, m, _ in PAPER_TARGETS_N7.values()]


def test_sensitivity_target_is_the_recorded_draw():
    """fig_sensitivity_n7.toml's target is what its comment says: the first draw of numpy
    default_rng(2021) of (4 distinct input bits, 4 of their 16 patterns) with C_LZ in [37, 40]."""
    import numpy as np

    from bayes_sgd.complexity import lz_complexity
    from bayes_sgd.tasks import boolean_inputs, parse_target, train_mask

    X = boolean_inputs(7).astype(np.int64)
    rng = np.random.default_rng(2021)
    for draw in range(1000):
        bits = np.sort(rng.choice(7, 4, replace=False))
        patterns = np.sort(rng.choice(16, 4, replace=False))
        f = np.isin(X[:, bits] @ (1 << np.arange(3, -1, -1)), patterns).astype(np.uint8)
        if 37 <= lz_complexity(f) <= 40:
            break
    cfgs = figure_configs("sensitivity_n7")
    base = cfgs["base"]
    assert (draw, bits.tolist(), patterns.tolist()) == (30, [0, 2, 5, 6], [4, 6, 13, 15])
    assert base.task.target == "".join(map(str, f))
    table = parse_target(base.task.target, 7)
    assert table.sum() == 32 and lz_complexity(table) == 38.5
    assert table[train_mask(7, train_size=32, seed=0)].sum() == 10
    # one setting at a time: every run differs from the base in the fields its overrides name
    def flat(d, pre=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
        return out

    b = flat(base.to_dict())
    for run in FIGURES["sensitivity_n7"].runs:
        if run.name not in cfgs:
            assert run.name in FIGURES["sensitivity_n7"].paper_only
            continue
        cfg = cfgs[run.name]
        assert cfg.samplers.gp.enabled and not cfg.samplers.rejection.enabled
        assert cfg.samplers.gp.mode == "joint"
        changed = {k for k, v in flat(cfg.to_dict()).items() if v != b[k]} - {"name"}
        # |S| 16 / 64 change the resolved train_size (their S is drawn from it)
        assert changed == {o.split("=")[0] for o in run.overrides}, run.name


def _flat(d, pre=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
    return out


# The sensitivity study at --scale paper (reproduce.py, "The sensitivity study at --scale
# paper"): the base is the authors' target 4 with their S at the paper's settings, SGD only at
# 10^4 runs; each row changes the base in the fields of its setting, plus the run count of the
# two rows given fewer runs (and lr 0.001's epoch cap); |S| 16 / 64 change the mask and with it
# the resolved train_size.
SENSITIVITY_PAPER_CHANGES = {
    "base": set(), "lr0.001": {"samplers.sgd.lr", "samplers.sgd.max_epochs", "samplers.sgd.n_runs"},
    "lr0.1": {"samplers.sgd.lr"}, "batch1": {"samplers.sgd.batch_size"},
    "batch32": {"samplers.sgd.batch_size"}, "mse": {"samplers.sgd.loss"},
    "adam": {"samplers.sgd.optimizer"}, "inputs_pm1": {"task.encoding"},
    "S16": {"task.train_mask", "task.train_size"}, "S64": {"task.train_mask", "task.train_size"},
    "after64": {"samplers.sgd.epochs_after_fit"}, "width200": {"model.widths"},
    "width1000": {"model.widths", "samplers.sgd.n_runs"}, "sigma_b0.1": {"model.sigma_b"},
    "sigma_b0": {"model.sigma_b"},
}


def test_sensitivity_paper_scale_is_target_4_one_setting_at_a_time():
    from bayes_sgd.reproduce import PAPER_TARGETS_N7, config_path

    cfgs = figure_configs("sensitivity_n7", scale="paper")
    assert list(cfgs) == [r.name for r in FIGURES["sensitivity_n7"].runs]  # width1000 included
    base = cfgs["base"]
    # the paper's settings of figure (b) for target 4 (paper_targets_n7.toml), SGD only
    paper_t4 = load_config(config_path(FIGURES["targets_n7"], "paper"))
    assert (base.task.target, base.task.train_mask) == PAPER_TARGETS_N7["t4"][:2]
    ref = _flat(paper_t4.to_dict())
    got = _flat(base.to_dict())
    assert {k for k, v in got.items() if v != ref[k]} == {
        "name", "samplers.rejection.enabled", "samplers.sgd.n_runs"}
    assert not base.samplers.rejection.enabled and base.samplers.sgd.n_runs == 10_000
    assert base.samplers.gp.max_functions >= base.samplers.sgd.n_runs
    want = {"lr0.001": (0.001, 2000, 20000), "width1000": (0.01, 1000, 5000)}
    for name, cfg in cfgs.items():
        changed = {k for k, v in _flat(cfg.to_dict()).items() if v != got[k]} - {"name"}
        assert changed == SENSITIVITY_PAPER_CHANGES[name], name
        sgd = cfg.samplers.sgd
        assert (sgd.lr, sgd.n_runs, sgd.max_epochs) == want.get(name, (sgd.lr, 10_000, 5000))
        assert cfg.samplers.gp.enabled and cfg.samplers.gp.mode == "joint"
    # |S| 16 a subset, |S| 64 a superset of the authors' S
    s32 = {i for i, c in enumerate(base.task.train_mask) if c == "1"}
    s16 = {i for i, c in enumerate(cfgs["S16"].task.train_mask) if c == "1"}
    s64 = {i for i, c in enumerate(cfgs["S64"].task.train_mask) if c == "1"}
    assert len(s16) == 16 and s16 < s32 and len(s64) == 64 and s64 > s32


@pytest.mark.parametrize("size, seed", [(16, 0), (64, 0), (1, 3), (31, 1), (33, 2), (127, 0)])
def test_nested_mask_is_a_seeded_subset_or_superset(size, seed):
    import numpy as np

    from bayes_sgd.reproduce import PAPER_S_N7, nested_mask

    got = nested_mask(PAPER_S_N7, size, seed=seed)
    s = [i for i, c in enumerate(PAPER_S_N7) if c == "1"]
    rest = [i for i, c in enumerate(PAPER_S_N7) if c == "0"]
    rng = np.random.default_rng(seed)  # the draw, redone from its description
    want = set(rng.choice(s, size, replace=False).tolist()) if size <= 32 else \
        set(s) | set(rng.choice(rest, size - 32, replace=False).tolist())
    assert {i for i, c in enumerate(got) if c == "1"} == want and len(got) == 128
    assert nested_mask(PAPER_S_N7, size, seed=seed) == got  # reproducible


@pytest.mark.parametrize("size", [0, 128, -1])
def test_nested_mask_rejects_sizes_outside_1_to_127(size):
    from bayes_sgd.reproduce import PAPER_S_N7, nested_mask

    with pytest.raises(ValueError, match=r"size: expected an integer in \[1, 127\]"):
        nested_mask(PAPER_S_N7, size)


@pytest.mark.slow
def test_sensitivity_figure_end_to_end(tmp_path, monkeypatch):
    """Two rows of the sensitivity study on a tiny task: the table and the JSON hold each run's
    summary.json measures, and the verdict follows the intervals.  Slow: two SGD + GP runs
    (6 min on the 2 shared cores under heavy load when written)."""
    import dataclasses

    from bayes_sgd import reproduce as rp

    fig = FIGURES["sensitivity_n7"]
    monkeypatch.setitem(FIGURES, "sensitivity_n7", dataclasses.replace(
        fig, runs=tuple(r for r in fig.runs if r.name in ("base", "lr0.1"))))
    ov = ["task.n=5", "task.target=and3", "task.train_size=8", "model.widths=[8]",
          "samplers.sgd.n_runs=24", "samplers.sgd.max_epochs=3000", "samplers.gp.max_functions=8"]
    assert rp.reproduce("sensitivity_n7", out=tmp_path, quiet=True, overrides=ov) == 0
    d = tmp_path / "sensitivity_n7"
    assert (d / "sensitivity_n7.png").stat().st_size > 10_000
    report = json.loads((d / "sensitivity_n7.json").read_text())["metrics"]
    md = (d / "sensitivity_n7.md").read_text().splitlines()
    assert len(md) == 2 + 2 and md[2].startswith("| base |") and md[3].startswith("| lr 0.1 |")
    for name in ("base", "lr0.1"):
        summ = json.loads((d / name / "summary.json").read_text())
        want = summ["agreement"]["measures"]["gp_vs_sgd"]["values"]
        got = report[name]["measures"]
        for key in ("weighted_mean_log10_ratio", "frac_within_1_decades", "hellinger"):
            assert got[key] == want[key]
        assert report[name]["sgd_fitted"] == f"{summ['sgd']['n_fitted']}/24"
    lo, hi = report["lr0.1"]["measures"]["frac_within_1_decades"]["ci"]
    blo, bhi = report["base"]["measures"]["frac_within_1_decades"]["ci"]
    want = "nearer" if lo > bhi else "further" if hi < blo else "no clear change"
    assert report["lr0.1"]["verdict"] == want and md[3].endswith(f"| {want} |")


def test_only_runs_the_named_runs_and_draws_the_complete_ones(tmp_path, capsys, monkeypatch):
    """``--only`` runs just the named runs; the figure is drawn from every complete run folder
    (earlier ones included) and the report lists the runs still missing.  ``--set`` reaches
    every run's config.  Rejection-only runs and a recording ``_draw`` keep it fast."""
    from bayes_sgd import reproduce as rp
    from bayes_sgd.cli import main

    drawn = []

    def record(figure, spec, folders, folder, scale):
        drawn.append(list(folders))
        return folder / "x.png", {n: {} for n in folders}

    monkeypatch.setattr(rp, "_draw", record)
    names = list(figure_configs("targets_n7"))
    assert main(["reproduce", "targets_n7", "--only", "nope", "--out", str(tmp_path)]) == 2
    assert "--only" in capsys.readouterr().err and not (tmp_path / "targets_n7").exists()
    args = ["reproduce", "targets_n7", "--quiet", "--out", str(tmp_path)]
    for o in ("model.widths=[8]", "samplers.rejection.n_samples=20000", "samplers.sgd.enabled=false"):
        args += ["--set", o]
    assert main([*args, "--only", names[0]]) == 0
    fig = tmp_path / "targets_n7"
    assert sorted(p.name for p in fig.iterdir() if p.is_dir()) == [names[0]]
    report = json.loads((fig / "targets_n7.json").read_text())
    assert list(report["runs"]) == [names[0]] and report["missing_runs"] == names[1:]
    summ = json.loads((fig / names[0] / "summary.json").read_text())
    assert summ["rejection"]["n_samples"] == 20000 and "sgd" not in summ
    assert main([*args, "--only", ",".join(names[1:3])]) == 0
    # the two targets differ only in the target: one rejection pass (tests/test_rejection_multi)
    for n, shared in ((names[0], None), (names[1], 2), (names[2], 2)):
        summ = json.loads((fig / n / "summary.json").read_text())["rejection"]
        assert summ.get("shared_pass_runs") == shared and summ["n_samples"] == 20000
    report = json.loads((fig / "targets_n7.json").read_text())
    assert drawn == [names[:1], names[:3]]
    assert list(report["runs"]) == names[:3] and report["missing_runs"] == names[3:]
