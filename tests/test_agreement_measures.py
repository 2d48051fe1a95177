"""The distribution measures of ``bayes_sgd.analysis.measures`` against brute-force recounts
over individual runs / samples, and the coverage of their bootstrap intervals in simulation."""
from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from bayes_sgd.analysis import _RANGE, DECADES, agreement, compare, measures, pair_roles
from bayes_sgd.function_table import COLUMNS, concat


def _counts_frame(sampler, counts: dict) -> pd.DataFrame:
    funcs = list(counts)
    c = np.array([counts[f] for f in funcs], float)
    p = c / c.sum()
    return pd.DataFrame({"sampler": sampler, "function": funcs, "count": c.astype(int),
                         "count_half0": 0, "count_half1": 0, "p": p, "log10_p": np.log10(p),
                         "log10_p_err": np.nan, "lz": 0.0, "ones": 0, "test_error": 0.0},
                        columns=COLUMNS)


def _score_frame(sampler, scores: dict) -> pd.DataFrame:
    lp = np.array(list(scores.values()), float)
    return pd.DataFrame({"sampler": sampler, "function": list(scores), "p": 10 ** lp,
                         "log10_p": lp}).reindex(columns=COLUMNS)


# SGD found a..h; rejection a..e, g and x, y (not found by SGD); h only by SGD; the GP scored
# a..e and z (not found by SGD), not f, g, h.
SGD = {"a": 400, "b": 30, "c": 12, "d": 2, "e": 6, "f": 3, "g": 10, "h": 40}
REJ = {"a": 50, "b": 20, "c": 9, "d": 5, "e": 4, "g": 30, "x": 7, "y": 1}
GP = {"a": -0.5, "b": -1.2, "c": -1.9, "d": -2.4, "e": -2.0, "z": -3.0}
TARGET = "g"


def _runs(counts: dict) -> list[str]:
    """One entry per individual run (sample), the function it found."""
    return [f for f, c in counts.items() for _ in range(c)]


def _brute(q_runs: list[str], p_runs: list[str] | None = None, p_scores: dict | None = None):
    """The measures by loops over q's individual runs (and p's individual samples)."""
    n_q = len(q_runs)
    pq = {f: c / n_q for f, c in Counter(q_runs).items()}
    if p_runs is not None:
        pp = {f: c / len(p_runs) for f, c in Counter(p_runs).items()}
    else:
        pp = {f: 10.0 ** v for f, v in p_scores.items()}
    ratios = [math.log10(pq[f] / pp[f]) for f in q_runs if f in pp]  # one per run, P_B known
    mean = sum(ratios) / len(ratios) if ratios else math.nan  # undefined: no run has P_B known
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratios) / len(ratios)) if ratios else math.nan
    out = {"weighted_mean_log10_ratio": mean, "weighted_sd_log10_ratio": sd,
           "q_mass_p_known": len(ratios) / n_q}
    for d in DECADES:
        out[f"frac_within_{d:g}_decades"] = sum(abs(r) <= d for r in ratios) / n_q
    found_q = set(q_runs)
    if p_runs is not None:
        out["p_mass_covered"] = sum(f in found_q for f in p_runs) / len(p_runs)
    else:
        out["p_mass_covered"] = sum(v for f, v in pp.items() if f in found_q)
    bc = sum(math.sqrt(pq.get(f, 0.0) * pp.get(f, 0.0)) for f in set(pq) | set(pp))
    out["hellinger"] = math.sqrt(max(0.0, 1.0 - bc))
    return out


@pytest.fixture(scope="module")
def table():
    return concat([_counts_frame("rejection", REJ), _counts_frame("sgd", SGD),
                   _score_frame("gp", GP)])


@pytest.mark.parametrize("q, p", [("sgd", "rejection"), ("sgd", "gp"), ("rejection", "gp"),
                                  ("rejection", "sgd")])
def test_measures_equal_brute_force_recount(table, q, p):
    counts = {"sgd": SGD, "rejection": REJ}
    brute = _brute(_runs(counts[q]), _runs(counts[p]) if p in counts else None,
                   GP if p == "gp" else None)
    got = measures(table, q, p, min_counts=[2, 5], target=TARGET, n_boot=50)
    assert got["p_kind"] == ("score" if p == "gp" else "counts")
    for name, want in brute.items():
        assert got["values"][name]["value"] == pytest.approx(want, rel=1e-12, abs=1e-14), name
    for k in (2, 5):  # the correlations are compare()'s
        for tag, exclude in (("with_target", None), ("without_target", TARGET)):
            c = compare(table, q, p, k=k, exclude=exclude)
            for method in ("pearson", "spearman"):
                v = got["values"][f"{method}_k={k}_{tag}"]["value"]
                assert (v is None) == (c[method] is None)
                if v is not None:
                    assert v == pytest.approx(c[method], rel=1e-10, abs=1e-12)


def test_measures_by_hand(table):
    # SGD vs rejection: 503 runs, 460 of them on functions rejection found (not f: 3, h: 40)
    v = measures(table, "sgd", "rejection", n_boot=10)["values"]
    assert v["q_mass_p_known"]["value"] == pytest.approx(460 / 503)
    # rejection's 126 samples: x (7), y (1) not found by SGD
    assert v["p_mass_covered"]["value"] == pytest.approx(118 / 126)
    # the GP scored a..e of SGD's functions: 450 runs
    g = measures(table, "sgd", "gp", n_boot=10)["values"]
    assert g["q_mass_p_known"]["value"] == pytest.approx(450 / 503)
    assert g["p_mass_covered"]["value"] == pytest.approx(sum(10 ** GP[f] for f in "abcde"))


def test_identical_samplers_are_on_the_diagonal():
    df = concat([_counts_frame("rejection", SGD), _counts_frame("sgd", SGD)])
    v = measures(df, "sgd", "rejection", n_boot=20)["values"]
    assert v["weighted_mean_log10_ratio"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert v["weighted_sd_log10_ratio"]["value"] == pytest.approx(0.0, abs=1e-7)
    assert v["frac_within_0.5_decades"]["value"] == pytest.approx(1.0)
    assert v["hellinger"]["value"] == pytest.approx(0.0, abs=1e-7)


def test_pair_roles_and_agreement_block(table):
    assert pair_roles("gp", "sgd") == ("sgd", "gp")
    assert pair_roles("sgd", "rejection") == ("sgd", "rejection")
    assert pair_roles("gp", "rejection") == ("rejection", "gp")
    assert pair_roles("nuts", "rejection") == ("nuts", "rejection")
    out = agreement(table, min_counts=[2], target=TARGET, n_boot=30)
    assert set(out["measures"]) == {"sgd_vs_rejection", "gp_vs_rejection", "gp_vs_sgd"}
    m = out["measures"]["gp_vs_sgd"]
    assert (m["q"], m["p"], m["n_bootstrap"]) == ("sgd", "gp", 30)
    assert m == measures(table, "sgd", "gp", min_counts=[2], target=TARGET, n_boot=30)
    again = agreement(table, min_counts=[2], target=TARGET, n_boot=30)
    assert again["measures"] == out["measures"]  # fixed seeds
    other = measures(table, "sgd", "gp", min_counts=[2], target=TARGET, n_boot=30, seed=1)
    assert other["values"]["weighted_mean_log10_ratio"]["ci"] != m["values"]["weighted_mean_log10_ratio"]["ci"]


# ---- coverage of the bootstrap intervals ----------------------------------------------------

N_FUNCTIONS, N_SAMPLES, N_DATASETS = 20, 5000, 200
# r = log10 P_q / P_p of the 20 functions; the first of each ten (nan) is solved for so that P_p
# sums to 1 (it comes out -0.34).  Every |r| is >= 0.15 decades from 0.5 and from 1, so the
# within-d fractions are not decided by the noise of a function on the boundary.
R_TRUE = np.array([np.nan, -0.2, 0.0, 0.2, 0.3, 0.75, -0.3, 0.1, 1.2, -0.1] * 2)


def _truth():
    rng = np.random.default_rng(1)
    pq = 0.6 * rng.dirichlet(np.full(N_FUNCTIONS, 5.0)) + 0.4 / N_FUNCTIONS
    r = R_TRUE.copy()
    free = np.isnan(r)
    r[free] = -np.log10((1 - (pq[~free] * 10.0 ** -r[~free]).sum()) / pq[free].sum())
    pp = pq * 10.0 ** -r
    assert pp.sum() == pytest.approx(1.0, abs=1e-12)
    mean = float((pq * r).sum())
    truth = {"weighted_mean_log10_ratio": mean,
             "weighted_sd_log10_ratio": float(np.sqrt((pq * (r - mean) ** 2).sum())),
             **{f"frac_within_{d:g}_decades": float(pq[np.abs(r) <= d].sum()) for d in DECADES},
             "hellinger": float(np.sqrt(1 - np.sqrt(pq * pp).sum())),
             "pearson_k=1_with_target": float(stats.pearsonr(np.log10(pq), np.log10(pp))[0]),
             "spearman_k=1_with_target": float(stats.spearmanr(np.log10(pq), np.log10(pp))[0])}
    return pq, pp, r, truth


def test_bootstrap_interval_coverage():
    """200 data sets of 5,000 SGD runs and 5,000 rejection samples on 20 functions (each
    P >= 0.003, so every function is seen by both; the rarest ~16 times): the 95 % interval of
    each measure must hold the true value in 178 or more (>= 89 %) and at most 199 of them.
    For an interval of exact 95 % coverage the number covered is Binomial(200, 0.95): the
    chance of < 178 is 0.3 % and of 200 is 0.004 %, so a false failure has probability < 0.4 %
    per measure (seeds fixed, so the outcome is deterministic).  Measured: 0.93-0.97.

    Spearman's interval is not calibrated and is held to less: >= 150 of 200 (75 %; measured
    87 %).  Noise reorders functions of nearly equal P, which lowers the estimated rank
    correlation (attenuation) in a way the bootstrap cannot undo with 20 functions."""
    pq, pp, r, truth = _truth()
    assert np.abs(np.abs(r)[:, None] - np.array(DECADES)[None]).min() >= 0.149
    funcs = [f"f{i:02d}" for i in range(N_FUNCTIONS)]
    covered = dict.fromkeys(truth, 0)
    for s in range(N_DATASETS):
        g = np.random.default_rng([7, s])
        cq, cp = g.multinomial(N_SAMPLES, pq), g.multinomial(N_SAMPLES, pp)
        assert cq.min() > 0 and cp.min() > 0  # all seen: the truth's selection
        df = concat([_counts_frame("sgd", dict(zip(funcs, cq))),
                     _counts_frame("rejection", dict(zip(funcs, cp)))])
        v = measures(df, "sgd", "rejection", min_counts=[1], n_boot=500, seed=s)["values"]
        for name, t in truth.items():
            lo, hi = v[name]["ci"]
            covered[name] += lo <= t <= hi
    print({k: c / N_DATASETS for k, c in covered.items()})
    for name, c in covered.items():
        assert (150 if name.startswith("spearman") else 178) <= c <= 199, (name, c)


@pytest.mark.filterwarnings("ignore:No data for colormapping:UserWarning")
def test_scatter_annotates_the_measures(table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayes_sgd import plotting

    fig, ax = plt.subplots()
    plotting.scatter(table, "rejection", "sgd", k=2, color=None, ax=ax)
    text = "\n".join(t.get_text() for t in ax.texts)
    plt.close(fig)
    brute = _brute(_runs(SGD), _runs(REJ))
    assert f"= {brute['weighted_mean_log10_ratio']:+.2f}" in text
    assert f"{100 * brute['frac_within_1_decades']:.0f} % of sgd within 1 decade" in text


def test_cross_check_against_a_recount():
    """SGD's top functions with the GP's P_B and rejection's counts: recomputed by hand from
    individual samples (binomial z of the counts under the GP's P_B)."""
    import math

    import pandas as pd

    from bayes_sgd.analysis import cross_check

    rng = np.random.default_rng(3)
    funcs = [format(i, "04b") for i in range(16)]
    sgd_runs = rng.choice(16, size=500, p=np.arange(16, 0, -1) / 136)
    rej_samples = rng.choice(16, size=300, p=np.full(16, 1 / 16))
    pb = rng.dirichlet(np.ones(16))
    rows = []
    for name, draws in (("sgd", sgd_runs), ("rejection", rej_samples)):
        c = np.bincount(draws, minlength=16)
        rows += [{"sampler": name, "function": funcs[i], "count": int(c[i]), "p": c[i] / c.sum()}
                 for i in range(16) if c[i]]
    order = sorted(range(16), key=lambda i: -sum(sgd_runs == i))[:5]
    unscored = order[1]  # one of SGD's top functions the GP did not score
    rows += [{"sampler": "gp", "function": funcs[i], "count": pd.NA, "p": pb[i]}
             for i in range(16) if i != unscored]
    df = pd.DataFrame(rows)
    out = cross_check(df, n=5)
    assert out["n_accepted_ref"] == 300 and [r["function"] for r in out["functions"]] == \
        [funcs[i] for i in order]
    for r, i in zip(out["functions"], order):
        assert r["count_ref"] == sum(rej_samples == i)
        assert r["p_q"] == pytest.approx(sum(sgd_runs == i) / 500)
        if i == unscored:
            assert r["p_b"] is None and r["z"] is None
            continue
        assert r["expected_count_ref"] == pytest.approx(300 * pb[i])
        assert r["z"] == pytest.approx((r["count_ref"] - 300 * pb[i]) / math.sqrt(300 * pb[i] * (1 - pb[i])))


# ---- bias estimate, bias-corrected value and the measures at half the runs ----------------------
#
# Tiny tables whose every bootstrap replicate (multinomial over the function counts) or every
# half of the runs (multivariate hypergeometric) can be enumerated: the exact expectations
# below are sums over those outcomes of ``_brute`` (loops over individual runs).

SMALL_Q = {"a": 4, "b": 2, "c": 1, "h": 1}  # h: no P_B (rejection never found it, GP unscored)
SMALL_REJ = {"a": 3, "b": 2, "c": 1, "x": 1}  # x: not found by SGD
SMALL_GP = {"a": -0.3, "b": -0.9, "c": -1.5}
UNBIASED = ("weighted_mean_log10_ratio", "weighted_sd_log10_ratio", "frac_within_0.5_decades",
            "frac_within_1_decades", "q_mass_p_known", "p_mass_covered", "hellinger")


def _compositions(counts: dict, n: int):
    """Every way of putting n samples on the keys of ``counts`` (a multinomial's outcomes)."""
    keys = list(counts)
    for bars in itertools.combinations(range(n + len(keys) - 1), len(keys) - 1):
        edges = (-1, *bars, n + len(keys) - 1)
        yield dict(zip(keys, (edges[i + 1] - edges[i] - 1 for i in range(len(keys)))))


def _multinomial_outcomes(counts: dict):
    """(outcome, probability) of every multinomial draw of sum(counts) samples with
    probabilities counts / sum(counts): a bootstrap replicate's counts."""
    n = sum(counts.values())
    probs = np.array(list(counts.values()), float) / n
    for c in _compositions(counts, n):
        yield c, float(stats.multinomial.pmf(list(c.values()), n, probs))


def _exact_bootstrap(p: str):
    """name -> (mean, sd) of each measure over every bootstrap replicate of the small table
    (SGD's runs, and rejection's samples when p is rejection, resampled), conditional on the
    measure being defined, as the package's replicates are."""
    p_draws = list(_multinomial_outcomes(SMALL_REJ)) if p == "rejection" else [(None, 1.0)]
    vals, weights = [], []
    for cq, wq in _multinomial_outcomes(SMALL_Q):
        for cp, wp in p_draws:
            vals.append(_brute(_runs(cq), _runs(cp) if cp else None,
                               SMALL_GP if p == "gp" else None))
            weights.append(wq * wp)
    w = np.array(weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    out = {}
    for name in UNBIASED:
        v = np.array([d[name] for d in vals])
        ok = np.isfinite(v)
        m = np.average(v[ok], weights=w[ok])
        out[name] = (m, math.sqrt(np.average((v[ok] - m) ** 2, weights=w[ok])))
    return out


def _small_table(p: str):
    frames = [_counts_frame("sgd", SMALL_Q)]
    frames.append(_counts_frame("rejection", SMALL_REJ) if p == "rejection"
                  else _score_frame("gp", SMALL_GP))
    return concat(frames)


@pytest.mark.parametrize("p", ["gp", "rejection"])
def test_bootstrap_bias_equals_the_enumerated_bootstrap(p):
    """``bias`` is the bootstrap's mean minus the plug-in value: against the exact mean over
    every replicate (165 multinomial outcomes of SGD's 8 runs; with rejection, times 120 of its
    7 samples).  The package draws 20,000 replicates: its mean is within 4.5 Monte-Carlo
    standard errors (the exact sd / sqrt(20,000)) of the exact one, a false failure of < 1e-5
    per measure under the normal approximation (seed fixed)."""
    n_boot = 20_000
    exact = _exact_bootstrap(p)
    brute = _brute(_runs(SMALL_Q), _runs(SMALL_REJ) if p == "rejection" else None,
                   SMALL_GP if p == "gp" else None)
    got = measures(_small_table(p), "sgd", p, n_boot=n_boot)
    assert got["n_samples_q"] == 8
    for name in UNBIASED:
        v = got["values"][name]
        m, sd = exact[name]
        want = m - brute[name]
        tol = 4.5 * sd / math.sqrt(v.get("n_defined", n_boot)) + 1e-12
        assert v["bias"] == pytest.approx(want, abs=tol), name
        lo, hi = _RANGE.get(name, (-np.inf, np.inf))
        corrected = float(np.clip(brute[name] - v["bias"], lo, hi))
        assert v["value_bias_corrected"] == pytest.approx(corrected, abs=1e-12)
    # the weighted mean of this table is biased upwards (the entropy-like sum P log P)
    assert got["values"]["weighted_mean_log10_ratio"]["bias"] > 0


@pytest.mark.parametrize("p", ["gp", "rejection"])
def test_value_half_runs_against_the_enumerated_halves(p):
    """``value_half_runs`` is the mean of the measures of a random half of SGD's 8 runs and of
    the other half.  Over 200 seeds its mean is within 4.5 standard errors of the exact
    expectation over all 4-run halves (multivariate hypergeometric; the exact sd of one seed's
    value / sqrt(200)): a false failure of < 1e-5 per measure under the normal approximation."""
    n_q, seeds = sum(SMALL_Q.values()), 200
    keys = list(SMALL_Q)
    pairs, weights = [], []
    for c0 in _compositions(SMALL_Q, n_q // 2):
        if any(c0[f] > SMALL_Q[f] for f in keys):
            continue
        c1 = {f: SMALL_Q[f] - c0[f] for f in keys}
        w = stats.multivariate_hypergeom.pmf([c0[f] for f in keys], [SMALL_Q[f] for f in keys], n_q // 2)
        pairs.append([_brute(_runs(c), _runs(SMALL_REJ) if p == "rejection" else None,
                             SMALL_GP if p == "gp" else None) for c in (c0, c1)])
        weights.append(float(w))
    w = np.array(weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    table = _small_table(p)
    got = [measures(table, "sgd", p, n_boot=1, seed=s)["values"] for s in range(seeds)]
    for name in UNBIASED:
        halves = np.array([[h[name] for h in pair] for pair in pairs])
        # the mean of the halves where the measure is defined (a half with no run on a
        # function with P_B known has no weighted mean)
        v = np.array([r[np.isfinite(r)].mean() if np.isfinite(r).any() else np.nan for r in halves])
        ok = np.isfinite(v)
        m = np.average(v[ok], weights=w[ok])
        sd = math.sqrt(np.average((v[ok] - m) ** 2, weights=w[ok]))
        mine = np.array([g[name]["value_half_runs"] for g in got], float)
        assert np.isfinite(mine).all()
        assert mine.mean() == pytest.approx(m, abs=4.5 * sd / math.sqrt(seeds) + 1e-12), name


def _exact_plugin_and_bootstrap(pq, lpb, n):
    """Exact E[plug-in] and E[plug-in - bootstrap bias] of the weighted mean log10 P_q / P_B
    (P_B fixed) over every multinomial outcome of n runs, the bootstrap itself enumerated."""
    keys = [str(i) for i in range(len(pq))]
    outs = np.array([list(c.values()) for c in _compositions(dict.fromkeys(keys, 0), n)], float)

    def theta(c):
        ph = c / n
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, ph * (np.log10(np.where(c > 0, ph, 1.0)) - lpb), 0.0).sum(-1)

    def pmf(c, probs):  # multinomial pmf of the outcomes c (..., K) under probs (..., K)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(c > 0, c * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
            t = np.where((c > 0) & (probs == 0), -np.inf, t)
        return np.exp(special.gammaln(n + 1) - special.gammaln(c + 1).sum(-1) + t.sum(-1))

    w = pmf(outs, np.asarray(pq)[None])
    th = theta(outs)
    boot = pmf(outs[None, :, :], (outs / n)[:, None, :]) @ th - th  # each outcome's bootstrap bias
    truth = float((np.asarray(pq) * (np.log10(pq) - lpb)).sum())
    return float(w @ th) - truth, float(w @ (th - boot)) - truth


@pytest.mark.parametrize("pq, n, removed", [
    # all three functions seen in almost every data set: the correction removes the bias
    ((0.5, 0.3, 0.2), 30, (0.95, 1.05)),
    # five functions of P 0.1 in 8 runs, each unseen in 43 % of data sets: only part of it
    # (58 %; 10 runs give 64 % but hold 3,003^2 outcome pairs in memory)
    ((0.5, 0.1, 0.1, 0.1, 0.1, 0.1), 8, (0.3, 0.8)),
])
def test_bias_correction_removes_the_bias_only_where_functions_are_seen(pq, n, removed):
    """The plug-in weighted mean's exact bias over all multinomial data sets against the bias
    left after subtracting each data set's (enumerated) bootstrap bias.  With every function
    seen the bootstrap estimates the bias (~ (K - 1) / (2 n ln 10) decades) almost exactly; with
    functions that the runs miss it sees only the ones found, and part of the bias remains: the
    run-count dependence the docstring of ``measures`` describes.  Exact sums, no randomness."""
    pq = np.array(pq)
    lpb = np.log10(np.linspace(1.0, 2.0, len(pq)) / np.linspace(1.0, 2.0, len(pq)).sum())
    plug, corrected = _exact_plugin_and_bootstrap(pq, lpb, n)
    assert plug > 0
    frac = 1 - corrected / plug
    assert removed[0] <= frac <= removed[1], frac
    if len(pq) == 3:  # Miller-Madow's first-order bias of the entropy term
        assert plug == pytest.approx((len(pq) - 1) / (2 * n * math.log(10)), rel=0.1)


def test_intervals_miss_the_large_n_value_when_most_functions_are_unseen():
    """The limitation ``measures`` states, measured: P_SGD Zipf over 400 functions (P ~ 1/rank),
    log10 P_SGD/P_B of each drawn from N(0.8, 0.5) (GP scores, fixed), 300 runs per data set so
    that most functions are never seen.  In 100 data sets (seeds fixed, 300 replicates each) the
    95 % interval of the weighted mean held the true value in 1 of them and that of the share
    within a decade in 27, and the bias-corrected mean still sits 0.13 decades above the truth
    on average (the plug-in: 0.22).  Asserted: coverage <= 50 of 100 for both, and the corrected
    mean's average error > 5 standard errors above 0 and below the plug-in's.  With coverage 27 %
    (the larger one measured) more than 50 of 100 has probability < 1e-7: the false-failure rate."""
    k, n, sets = 400, 300, 100
    pq = 1.0 / np.arange(1, k + 1)
    pq /= pq.sum()
    lpb = np.log10(pq) - np.random.default_rng(5).normal(0.8, 0.5, k)
    funcs = [f"f{i:03d}" for i in range(k)]
    r = np.log10(pq) - lpb
    truth = {"weighted_mean_log10_ratio": float((pq * r).sum()),
             "frac_within_1_decades": float(pq[np.abs(r) <= 1].sum())}
    gp = _score_frame("gp", dict(zip(funcs, lpb)))
    covered = dict.fromkeys(truth, 0)
    err_plug, err_corr = [], []
    for s in range(sets):
        c = np.random.default_rng([9, s]).multinomial(n, pq)
        df = concat([_counts_frame("sgd", {f: x for f, x in zip(funcs, c) if x > 0}), gp])
        v = measures(df, "sgd", "gp", n_boot=300, seed=s)["values"]
        for name, t in truth.items():
            lo, hi = v[name]["ci"]
            covered[name] += lo <= t <= hi
        m = v["weighted_mean_log10_ratio"]
        err_plug.append(m["value"] - truth["weighted_mean_log10_ratio"])
        err_corr.append(m["value_bias_corrected"] - truth["weighted_mean_log10_ratio"])
    print(covered, np.mean(err_plug), np.mean(err_corr))
    assert all(c <= sets // 2 for c in covered.values()), covered
    se = np.std(err_corr) / math.sqrt(sets)
    assert 5 * se < np.mean(err_corr) < np.mean(err_plug)
