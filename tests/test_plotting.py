"""Plots of bayes_sgd.plotting on function tables with the real schema: what they draw is
checked against the numbers computed directly."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bayes_sgd import plotting  # noqa: E402
from bayes_sgd.analysis import compare  # noqa: E402
from bayes_sgd.function_table import COLUMNS, concat  # noqa: E402

RNG = np.random.default_rng(0)
pytestmark = pytest.mark.filterwarnings("ignore:No data for colormapping:UserWarning")


def table(sampler: str, functions, counts, lz=None, test_error=None) -> pd.DataFrame:
    counts = np.asarray(counts, float)
    p = counts / counts.sum()
    n = len(counts)
    return pd.DataFrame({
        "sampler": sampler, "function": list(functions), "count": counts.astype(int),
        "count_half0": (counts // 2).astype(int), "count_half1": (counts - counts // 2).astype(int),
        "p": p, "log10_p": np.log10(p), "log10_p_err": np.nan,
        "lz": lz if lz is not None else RNG.choice([7.0, 14.0, 21.0, 28.0], n),
        "ones": RNG.integers(0, 8, n),
        "test_error": test_error if test_error is not None else RNG.uniform(0, 0.5, n)},
        columns=COLUMNS)


def fake_pair(n=60, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    funcs = [format(i, "016b") for i in range(n)]
    base = 2000.0 / np.arange(1, n + 1)
    rej = np.maximum(1, rng.poisson(base))
    sgd = np.maximum(1, rng.poisson(base * rng.lognormal(0, 0.3, n)))
    lz = rng.choice([7.0, 14.0, 21.0, 28.0], n)
    err = rng.uniform(0, 0.5, n)
    return concat([table("rejection", funcs, rej, lz, err), table("sgd", funcs, sgd, lz, err)])


def test_rank_plot_fitted_slope_equals_polyfit():
    counts = np.maximum(1, (1e5 / np.arange(1, 301) ** 1.3).astype(int))
    df = table("prior", [format(i, "032b") for i in range(300)], RNG.permutation(counts))
    fig, ax = plt.subplots()
    plotting.rank_plot(df, "prior", ax=ax)
    data, fit = ax.lines[0], ax.lines[1]
    p = np.sort(df["p"].to_numpy())[::-1]
    rank = np.arange(1, len(p) + 1)
    np.testing.assert_allclose(data.get_ydata(), p)  # sorted decreasing, against rank
    slope, icpt = np.polyfit(np.log10(rank), np.log10(p), 1)
    x, y = np.log10(fit.get_xdata()), np.log10(fit.get_ydata())
    drawn = np.polyfit(x, y, 1)
    np.testing.assert_allclose(drawn, [slope, icpt], rtol=1e-9)
    np.testing.assert_allclose(plotting.rank_fit(df, "prior"), (slope, icpt), rtol=1e-12)
    assert f"{slope:.2f}" in fit.get_label()
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert -1.5 < slope < -1.0  # the Zipf exponent we put in, flattened by the integer counts
    plt.close(fig)


def test_complexity_plot_bound_line_is_fit_of_maxima():
    df = fake_pair()
    df = df[df["sampler"] == "rejection"].assign(sampler="prior")
    fig, ax = plt.subplots()
    plotting.complexity_plot(df, "prior", ax=ax)
    line = ax.lines[0]
    top = df.groupby("lz")["log10_p"].max()
    slope, icpt = np.polyfit(top.index.to_numpy(float), top.to_numpy(), 1)
    np.testing.assert_allclose(np.polyfit(line.get_xdata(), line.get_ydata(), 1), [slope, icpt])
    np.testing.assert_allclose(plotting.bound_fit(df, "prior"), (slope, icpt))
    plt.close(fig)


@pytest.mark.parametrize("color", ["lz", "test_error", None])
def test_scatter_log_log_diagonal_decades_and_correlation(color):
    df = fake_pair()
    fig, ax = plt.subplots()
    plotting.scatter(df, "rejection", "sgd", k=2, color=color, ax=ax)
    pts = ax.collections[0].get_offsets()
    r = compare(df, "rejection", "sgd", k=2)
    assert len(pts) == r["n_functions"] > 10
    diag = [l for l in ax.lines if l.get_label() == "y = x"][0]
    np.testing.assert_array_equal(diag.get_xdata(), diag.get_ydata())
    ticks = ax.get_xticks()
    assert np.all(np.diff(ticks) == 1) and np.all(ticks == np.round(ticks))  # whole decades
    assert ax.get_xticklabels()[0].get_text().startswith("$10^{")
    text = " ".join(t.get_text() for t in ax.texts)
    assert f"Pearson {r['pearson']:.2f}" in text and f"n = {r['n_functions']}" in text
    if color:
        assert len(fig.axes) == 2  # the colour bar
        cbar_label = fig.axes[1].get_ylabel()
        assert cbar_label == {"lz": r"$C_{LZ}$", "test_error": "test error"}[color]
        # colours are each function's attribute
        vals = ax.collections[0].get_array()
        w = df.drop_duplicates("function").set_index("function")[color]
        keep = df.pivot_table(index="function", columns="sampler", values="count").ge(2).all(axis=1)
        np.testing.assert_allclose(np.sort(vals), np.sort(w[keep[keep].index].to_numpy(float)))
    plt.close(fig)


def test_grid_one_panel_per_row_and_column_value():
    frames = []
    for i, (opt, bs) in enumerate([(o, b) for o in ("sgd", "adam") for b in (1, 8, 32)]):
        d = fake_pair(seed=i)
        d.insert(0, "run", f"{opt}-{bs}")
        frames.append(d.assign(optimizer=opt, batch_size=bs))
    df = pd.concat(frames, ignore_index=True)
    fig = plotting.grid(df, row="optimizer", col="batch_size", color=None)
    panels = [a for a in fig.axes if a.collections]
    assert len(panels) == 6
    titles = [a.get_title() for a in panels]
    assert titles[0] == "optimizer = sgd | batch_size = 1"
    assert titles[-1] == "optimizer = adam | batch_size = 32"
    # each panel shows exactly its own run's functions
    sub = df[(df["optimizer"] == "adam") & (df["batch_size"] == 32)]
    assert len(panels[-1].collections[0].get_offsets()) == compare(sub, "rejection", "sgd", k=1)["n_functions"]
    plt.close(fig)
    fig = plotting.grid(df, col="run", color=None)
    assert [a.get_title() for a in fig.axes] == list(dict.fromkeys(df["run"]))
    plt.close(fig)
    with pytest.raises(KeyError):
        plotting.grid(df, row="nope")


def test_error_vs_complexity_and_epochs_plots():
    df = fake_pair()
    fig, axes = plt.subplots(1, 3)
    plotting.error_vs_complexity(df, "sgd", ax=axes[0])
    assert len(axes[0].collections[0].get_offsets()) == (df["sampler"] == "sgd").sum()
    runs = pd.DataFrame({"run_id": range(10), "fitted": [True] * 8 + [False] * 2,
                         "epochs_to_fit": pd.array([1, 2, 2, 3, 5, 8, 13, 40, None, None], dtype="Int64"),
                         "epochs_trained": [1, 2, 2, 3, 5, 8, 13, 40, 50, 50], "diverged": False})
    plotting.epochs_histogram(runs, ax=axes[1])
    assert axes[1].get_xscale() == "log" and sum(p.get_height() for p in axes[1].patches) == 8
    plotting.epochs_by_run(runs.assign(run="a"), ax=axes[2])
    line = axes[2].lines[0]
    assert line.get_ydata()[-1] == pytest.approx(0.8)  # 8 of 10 runs fitted
    assert "median 4" in line.get_label()
    plt.close(fig)


def test_resolved_fits_use_only_functions_seen_min_count_times():
    counts = np.concatenate([(5e4 / np.arange(1, 101) ** 1.0).astype(int), np.ones(400, int)])
    lz = np.concatenate([np.linspace(7, 40, 100), np.full(400, 60.0)])
    df = table("prior", [format(i, "032b") for i in range(500)], counts, lz=lz)
    fig, axes = plt.subplots(1, 2)
    plotting.zipf_plot(df, "prior", min_count=10, ax=axes[0])
    p = np.sort(df["p"].to_numpy())[::-1]
    head = p[np.sort(counts)[::-1] >= 10]
    slope, icpt = np.polyfit(np.log10(np.arange(1, len(head) + 1)), np.log10(head), 1)
    s, i, n = plotting.zipf_fit(df, "prior", min_count=10)
    assert n == len(head) == (counts >= 10).sum()
    np.testing.assert_allclose([s, i], [slope, icpt])
    fit = [l for l in axes[0].lines if l.get_label().startswith("fit over")][0]
    np.testing.assert_allclose(np.polyfit(np.log10(fit.get_xdata()), np.log10(fit.get_ydata()), 1),
                               [slope, icpt])
    assert -1.1 < s < -0.9  # the exponent put in; the 400 singletons do not pull it
    assert abs(plotting.rank_fit(df, "prior")[0] - s) > 0.3  # the all-function fit is not
    plotting.simplicity_plot(df, "prior", min_count=10, ax=axes[1])
    res = df[df["count"] >= 10]
    top = res.groupby("lz")["log10_p"].max()
    slope = np.polyfit(top.index.to_numpy(float), top.to_numpy(), 1)[0]
    b, a = plotting.simplicity_fit(df, "prior", min_count=10)
    assert b == pytest.approx(slope) and b < 0
    bound = a + b * res["lz"].to_numpy(float)
    assert np.all(res["log10_p"].to_numpy() <= bound + 1e-12)  # an upper bound of every resolved f
    assert np.isclose(res["log10_p"].to_numpy(), bound).any()  # and touches one
    plt.close(fig)


# (x values, y values) -> expected ((xlo, xhi), (ylo, yhi)) with pad 0.25, worked out by hand
LIMIT_CASES = {
    # the case: P_B 1e-12..1e-10, P_SGD 1e-3..1e-1: disjoint ranges keep their own
    # axes instead of a shared one from 1e-13 that squeezes the points into a corner
    "disjoint": ([-12.0, -11.0, -10.0], [-3.0, -2.0, -1.0], ((-12.25, -9.75), (-3.25, -0.75))),
    # overlapping ranges share the union, so y = x is the square's diagonal
    "overlap": ([-4.0, -1.0], [-3.0, -0.5], ((-4.25, -0.25), (-4.25, -0.25))),
    # never above P = 1 (+ pad); a single point gets the minimum span of one decade
    "top": ([0.0], [-0.1], ((-0.75, 0.25), (-0.75, 0.25))),
}


@pytest.mark.parametrize("name", sorted(LIMIT_CASES))
def test_scatter_limits_fit_the_data(name):
    x, y, want = LIMIT_CASES[name]
    got = plotting.scatter_limits(np.array(x), np.array(y))
    np.testing.assert_allclose(np.array(got), np.array(want))


def test_scatter_axes_fit_disjoint_data_and_say_where_the_diagonal_is():
    rng = np.random.default_rng(0)
    n = 30
    fn = [format(i, "012b") for i in range(n)]
    lp_b = rng.uniform(-12, -10, n)
    lp_sgd = rng.uniform(-3, -1, n)
    rows = []
    for s, lp in (("gp", lp_b), ("sgd", lp_sgd)):
        rows.append(pd.DataFrame({"sampler": s, "function": fn, "p": 10 ** lp, "log10_p": lp,
                                  "count": 5 if s == "sgd" else pd.NA}))
    df = pd.concat(rows, ignore_index=True)
    fig, ax = plt.subplots()
    plotting.scatter(df, "gp", "sgd", k=1, color=None, ax=ax, annotate=False)
    xlo, xhi = ax.get_xlim()
    ylo, yhi = ax.get_ylim()
    assert xlo == pytest.approx(lp_b.min() - 0.25) and xhi == pytest.approx(lp_b.max() + 0.25)
    assert ylo == pytest.approx(lp_sgd.min() - 0.25) and yhi == pytest.approx(lp_sgd.max() + 0.25)
    assert not [l for l in ax.lines if l.get_label() == "y = x"]
    text = " ".join(t.get_text() for t in ax.texts)
    assert f"{np.median(lp_sgd - lp_b):+.1f}" in text
    plt.close(fig)


@pytest.mark.parametrize("lo, hi, want", [(-12.3, -9.7, [-12, -11, -10]),
                                          (-20.5, 0.2, [-20, -17, -14, -11, -8, -5, -2]),
                                          (-0.4, -0.1, [0.0])])
def test_decade_ticks(lo, hi, want):
    np.testing.assert_array_equal(plotting.decade_ticks(lo, hi), want)


@pytest.mark.parametrize("config_name, task_name, expected", [
    ("boolean_n7", "boolean_n7_custom", "boolean_n7"),  # truth-table target: "custom" says nothing
    ("quick_and4_n7", "boolean_n7_and4", "quick_and4_n7 (boolean_n7_and4)"),
    ("same", "same", "same"),
])
def test_scatter_title_names_the_config(config_name, task_name, expected):
    from bayes_sgd.experiment import scatter_title

    assert scatter_title(config_name, task_name) == expected
