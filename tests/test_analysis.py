"""Agreement analysis on hand-built function tables with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_sgd.analysis import agreement, compare, correlation, split_half
from bayes_sgd.function_table import COLUMNS, concat


def _ranks_corr(x, y):
    """Spearman from first principles: Pearson of average ranks."""
    return np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1]


@pytest.mark.parametrize("seed", range(4))
def test_correlation_vs_scipy_and_numpy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    y[[3, 17]] = np.round(y[[3, 17]])  # some ties for the rank correlation
    y[5] = y[6]
    x_bad, y_bad = x.copy(), y.copy()
    x_bad[[0, 9]] = [np.nan, np.inf]
    y_bad[20] = -np.inf
    keep = np.ones(40, bool)
    keep[[0, 9, 20]] = False
    got = correlation(x_bad, y_bad)
    assert got["n_functions"] == 37
    assert got["pearson"] == pytest.approx(np.corrcoef(x[keep], y[keep])[0, 1], rel=1e-12)
    assert got["spearman"] == pytest.approx(_ranks_corr(x[keep], y[keep]), rel=1e-12)
    assert got["pearson"] == pytest.approx(stats.pearsonr(x[keep], y[keep])[0], rel=1e-12)
    assert got["spearman"] == pytest.approx(stats.spearmanr(x[keep], y[keep])[0], rel=1e-12)


@pytest.mark.parametrize("x, y, n", [([], [], 0), ([1, 2], [2, 3], 2), ([1, 1, 1], [1, 2, 3], 3),
                                     ([1, 2, 3], [5, 5, 5], 3), ([1, np.nan, 3, 4], [1, 2, np.nan, 4], 2)])
def test_correlation_undefined_cases(x, y, n):
    assert correlation(x, y) == {"n_functions": n, "pearson": None, "spearman": None}


def test_correlation_exact_values():
    assert correlation([1, 2, 3, 4], [2, 4, 6, 8.5])["spearman"] == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1])["pearson"] == pytest.approx(-1.0)
    # (0,1,2) vs (0,1,5): deviations (-1,0,1), (-2,-1,3): r = 5 / sqrt(2 * 14)
    assert correlation([0, 1, 2], [0, 1, 5])["pearson"] == pytest.approx(5 / math.sqrt(28), rel=1e-12)


def _frame(sampler, counts: dict, halves: dict | None = None, total=None):
    funcs = list(counts)
    c = np.array([counts[f] for f in funcs], float)
    total = c.sum() if total is None else total
    h0 = [halves[f][0] if halves else counts[f] for f in funcs]
    h1 = [halves[f][1] if halves else 0 for f in funcs]
    p = c / total
    return pd.DataFrame({"sampler": sampler, "function": funcs, "count": c.astype(int),
                         "count_half0": h0, "count_half1": h1, "p": p, "log10_p": np.log10(p),
                         "log10_p_err": np.nan, "lz": 0.0, "ones": 0, "test_error": 0.0},
                        columns=COLUMNS)


REJ = {"a": 50, "b": 20, "c": 9, "d": 5, "e": 4, "f": 1, "g": 30}
SGD = {"a": 400, "b": 30, "c": 12, "d": 2, "e": 6, "h": 40, "g": 10}
TARGET = "g"


@pytest.fixture()
def table():
    gp = pd.DataFrame({"sampler": "gp", "function": ["a", "b", "c", "d", "e", "z"],
                       "log10_p": [-0.5, -1.2, -1.9, -2.4, -2.0, -3.0]})
    gp["p"] = 10 ** gp["log10_p"]
    gp = gp.reindex(columns=COLUMNS)
    return concat([_frame("rejection", REJ), _frame("sgd", SGD), gp,
                   _frame("prior", {"0000": 7, "1111": 3})])


def _expected(x_counts, y_counts, k, exclude=None, y_log=None):
    shared = [f for f in x_counts if f in (y_log or y_counts) and x_counts[f] >= k
              and (y_log is not None or y_counts[f] >= k) and f != exclude]
    lx = [math.log10(x_counts[f] / sum(x_counts.values())) for f in shared]
    ly = [y_log[f] if y_log else math.log10(y_counts[f] / sum(y_counts.values())) for f in shared]
    return shared, lx, ly


@pytest.mark.parametrize("k, exclude", [(1, None), (2, None), (5, None), (5, TARGET), (10, None),
                                        (10, TARGET), (31, None)])
def test_compare_with_k_threshold(table, k, exclude):
    got = compare(table, "sgd", "rejection", k=k, exclude=exclude)
    shared, ls, lr = _expected(SGD, REJ, k, exclude)
    assert got["n_functions"] == len(shared)
    if len(shared) >= 3:
        assert got["pearson"] == pytest.approx(np.corrcoef(ls, lr)[0, 1], rel=1e-12)
        assert got["spearman"] == pytest.approx(_ranks_corr(ls, lr), rel=1e-12)
    else:
        assert got["pearson"] is None
    # symmetric in the pair
    swapped = compare(table, "rejection", "sgd", k=k, exclude=exclude)
    assert swapped["n_functions"] == got["n_functions"]
    if got["pearson"] is None:
        assert swapped["pearson"] is None
    else:
        assert swapped["pearson"] == pytest.approx(got["pearson"], rel=1e-12)


def test_compare_known_selection(table):
    # k = 5: functions seen >= 5 times by both: a (50, 400), b (20, 30), c (9, 12), g (30, 10)
    got = compare(table, "sgd", "rejection", k=5)
    assert got["n_functions"] == 4
    # without the target g: a, b, c
    assert compare(table, "sgd", "rejection", k=5, exclude="g")["n_functions"] == 3
    # k = 10: a, b, g (c has 9 rejection samples)
    assert compare(table, "sgd", "rejection", k=10)["n_functions"] == 3


def test_compare_with_estimator_thresholds_only_the_counting_side(table):
    gp_log = {"a": -0.5, "b": -1.2, "c": -1.9, "d": -2.4, "e": -2.0, "z": -3.0}
    got = compare(table, "rejection", "gp", k=5)
    shared, lr, lg = _expected(REJ, None, 5, y_log=gp_log)
    assert sorted(shared) == ["a", "b", "c", "d"]
    assert got["n_functions"] == 4
    assert got["pearson"] == pytest.approx(np.corrcoef(lr, lg)[0, 1], rel=1e-12)


def test_compare_missing_sampler(table):
    assert compare(table, "sgd", "nuts", k=1) == {"n_functions": 0, "pearson": None, "spearman": None}


HALVES = {  # function -> (half 0, half 1)
    "a": (100, 90), "b": (40, 55), "c": (10, 8), "d": (3, 1), "e": (2, 2), "f": (0, 7), "g": (25, 20),
}


@pytest.mark.parametrize("k, exclude", [(1, None), (2, None), (4, None), (5, None), (5, "g"), (10, None)])
def test_split_half_known_counts(k, exclude):
    counts = {f: a + b for f, (a, b) in HALVES.items()}
    df = concat([_frame("rejection", counts, HALVES)])
    got = split_half(df, "rejection", k=k, exclude=exclude)
    kh = math.ceil(k / 2)
    tot0 = sum(a for a, _ in HALVES.values())
    tot1 = sum(b for _, b in HALVES.values())
    keep = [f for f, (a, b) in HALVES.items() if a >= kh and b >= kh and f != exclude]
    x = [math.log10(HALVES[f][0] / tot0) for f in keep]
    y = [math.log10(HALVES[f][1] / tot1) for f in keep]
    assert got["n_functions"] == len(keep)
    assert got["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert got["spearman"] == pytest.approx(_ranks_corr(x, y), rel=1e-12)


def test_split_half_selection_by_hand():
    df = concat([_frame("rejection", {f: a + b for f, (a, b) in HALVES.items()}, HALVES)])
    # k = 5 -> ceil(5/2) = 3 per half: a, b, c, g (d has 1, e 2, f 0 in some half)
    assert split_half(df, "rejection", k=5)["n_functions"] == 4
    assert split_half(df, "rejection", k=1)["n_functions"] == 6  # f has 0 in half 0
    assert split_half(df, "sgd", k=1)["n_functions"] == 0


def test_agreement_structure(table):
    out = agreement(table, min_counts=[2, 5, 10], target=TARGET)
    # the prior is not a posterior sampler; pairs name (later, earlier) in POSTERIOR_SAMPLERS order
    assert set(out["pairs"]) == {"sgd_vs_rejection", "gp_vs_rejection", "gp_vs_sgd"}
    assert set(out["split_half"]) == {"rejection", "sgd"}
    for by_k in list(out["pairs"].values()) + list(out["split_half"].values()):
        assert set(by_k) == {"k=2", "k=5", "k=10"}
        for r in by_k.values():
            assert set(r) == {"with_target", "without_target"}
    assert out["pairs"]["sgd_vs_rejection"]["k=5"]["with_target"] == compare(table, "sgd", "rejection", k=5)
    assert (out["pairs"]["sgd_vs_rejection"]["k=5"]["without_target"]
            == compare(table, "sgd", "rejection", k=5, exclude=TARGET))
