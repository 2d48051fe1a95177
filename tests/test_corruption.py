"""Label corruption (``task.corrupt_fraction`` / ``task.corrupt_mode``) of Boolean and image
tasks, against closed forms and brute-force counts.

- "flip": exactly k = round(fraction * |S|) labels of S change, S and E stay the clean task's,
  fraction 1 is the complement of the target on S (label inversion).
- "redraw": k labels of S are replaced by fair coins, so the number that changes is
  Binomial(k, 1/2) per task, the new labels are independent of the true ones, and fraction 1
  gives fully random labels (half of them agreeing with the truth by chance).

The statistical checks pool many seeds (fixed here, so the tests are deterministic); each
asserts a two-sided binomial or chi-square acceptance region of a correct implementation with
false-failure probability 1e-6 per check, i.e. a correct implementation fails one of them for
about one choice of seeds in 10^5, while a flip (changed fraction 1, not 1/2) or a label kept
(0) is outside every region by tens of standard deviations.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from bayes_sgd.config import ConfigError, config_from_dict
from bayes_sgd.tasks import boolean_task, build_task
from bayes_sgd.tasks import image_task

ALPHA = 1e-6  # false-failure probability of each statistical check


def _boolean(seed, fraction, mode, *, target="parity", n=7, m=64):
    clean = boolean_task(n, target, train_size=m, seed=seed)
    bad = boolean_task(n, target, train_size=m, seed=seed, corrupt_fraction=fraction,
                       corrupt_mode=mode)
    return clean, bad


def _image(seed, fraction, mode):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (300, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 300)
    clean = image_task(images, labels, train_size=64, test_size=20, seed=seed)
    bad = image_task(images, labels, train_size=64, test_size=20, seed=seed,
                     corrupt_fraction=fraction, corrupt_mode=mode)
    return clean, bad


BUILDERS = {"boolean": _boolean, "image": _image}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("fraction,k", [(0.0, 0), (1 / 64, 1), (0.1, 6), (0.5, 32), (1.0, 64)])
def test_flip_changes_exactly_k_labels_of_S_and_keeps_S_and_E(kind, fraction, k):
    clean, bad = BUILDERS[kind](3, fraction, "flip")
    np.testing.assert_array_equal(bad.x_train, clean.x_train)  # same S, same E
    np.testing.assert_array_equal(bad.x_test, clean.x_test)
    np.testing.assert_array_equal(bad.y_test, clean.y_test)  # E keeps the true labels
    changed = np.flatnonzero(bad.y_train != clean.y_train)
    assert len(changed) == k == round(fraction * 64)
    if k:
        np.testing.assert_array_equal(changed, bad.meta["corrupted_index"])
    if fraction == 1.0:  # label inversion: the complement on S
        np.testing.assert_array_equal(bad.y_train, 1 - clean.y_train)


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_redraw_changes_half_of_the_chosen_labels(kind, fraction):
    """Pooled over 300 seeds the changed labels are Binomial(300 k, 1/2); only chosen ones change."""
    total_changed, total_chosen = 0, 0
    for seed in range(300):
        clean, bad = BUILDERS[kind](seed, fraction, "redraw")
        np.testing.assert_array_equal(bad.x_train, clean.x_train)
        np.testing.assert_array_equal(bad.y_test, clean.y_test)
        chosen = bad.meta["corrupted_index"]
        assert len(chosen) == round(fraction * 64) and len(set(chosen)) == len(chosen)
        changed = np.flatnonzero(bad.y_train != clean.y_train)
        assert set(changed) <= set(chosen)
        total_changed += len(changed)
        total_chosen += len(chosen)
    lo, hi = stats.binom.interval(1 - ALPHA, total_chosen, 0.5)
    assert lo <= total_changed <= hi, (total_changed, total_chosen, lo, hi)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_redrawn_labels_are_fair_coins_independent_of_the_truth(kind):
    """Fraction 1: the new label is 1 with probability 1/2 whether the true label is 0 or 1
    (two binomial checks; flipping gives 0 and 1, keeping gives 1 and 0), and the number of
    changed labels per task follows Binomial(64, 1/2) (chi-square over the per-task counts,
    pooled into bins of expected count >= 5)."""
    ones_given = {0: [0, 0], 1: [0, 0]}  # true label -> [new ones, count]
    per_task = []
    for seed in range(400):
        clean, bad = BUILDERS[kind](seed, 1.0, "redraw")
        for t in (0, 1):
            sel = clean.y_train == t
            ones_given[t][0] += int(bad.y_train[sel].sum())
            ones_given[t][1] += int(sel.sum())
        per_task.append(int((bad.y_train != clean.y_train).sum()))
    for t, (ones, count) in ones_given.items():
        assert count > 1000  # both true labels well represented (parity / label >= 5)
        lo, hi = stats.binom.interval(1 - ALPHA, count, 0.5)
        assert lo <= ones <= hi, (t, ones, count)
    # per-task counts against Binomial(64, 1/2): bins [0, 24], 25, ..., 39, [40, 64]
    edges = np.r_[0, np.arange(25, 41), 65]
    observed = np.histogram(per_task, bins=edges)[0]
    cdf = stats.binom.cdf(edges - 1, 64, 0.5)
    expected = len(per_task) * np.diff(np.r_[0.0, cdf[1:]])
    assert expected.min() >= 5
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > ALPHA


def _cfg(**task):
    return config_from_dict({"task": {"kind": "boolean", "n": 5, "target": "and3",
                                      "train_size": 12, **task}})


def test_config_field_reaches_the_boolean_task():
    clean = build_task(_cfg().task)
    bad = build_task(_cfg(corrupt_fraction=1.0, corrupt_mode="flip").task)
    np.testing.assert_array_equal(bad.y_train, 1 - clean.y_train)
    assert bad.meta["n_labels_changed"] == 12 and bad.meta["corrupt_mode"] == "flip"
    redrawn = build_task(_cfg(corrupt_fraction=1.0, corrupt_mode="redraw").task)
    assert redrawn.meta["n_labels_changed"] == int((redrawn.y_train != clean.y_train).sum())
    # the table the task uses: corrupted labels on S, the truth on E
    table = np.array([int(c) for c in redrawn.meta["target_table"]])
    np.testing.assert_array_equal(table[redrawn.train_index], redrawn.y_train)
    np.testing.assert_array_equal(table[redrawn.test_index], clean.y_test)
    assert redrawn.meta["clean_target_table"] == clean.meta["target_table"]


@pytest.mark.parametrize("task,match", [
    ({"corrupt_mode": "random"}, r"^task\.corrupt_mode: expected one of \['flip', 'redraw'\]"),
    ({"corrupt_fraction": 1.5}, r"^task\.corrupt_fraction: expected"),
])
def test_bad_corruption_fields_name_the_field(task, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**task)


@pytest.mark.parametrize("stored_mode,resumes", [(None, True), ("flip", True), ("redraw", False)])
def test_partial_run_from_before_the_field_resumes(tmp_path, stored_mode, resumes):
    """A manifest written before task.corrupt_mode existed (None: field absent) is the same
    config as the default ("flip"); a different mode is another config's folder."""
    from bayes_sgd.results_folder import ResultsFolderError, prepare_results_folder

    cfg = _cfg()
    stored = json.loads(json.dumps(cfg.to_dict()))
    del stored["task"]["corrupt_mode"]
    if stored_mode:
        stored["task"]["corrupt_mode"] = stored_mode
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "running", "config": stored}))
    if resumes:
        prepare_results_folder(tmp_path, cfg)
    else:
        with pytest.raises(ResultsFolderError, match="different config"):
            prepare_results_folder(tmp_path, cfg)
