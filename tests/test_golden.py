"""Golden tables: ``run_experiment`` on fixed small configs gives bit-identical
``functions.parquet`` and ``runs.parquet`` to the tables committed in ``tests/data/golden/``.

The tables were written by the code *before* the sampler-protocol refactor (issue 12), so this
test is the reference that a refactor changes no result: same seed and config, the same rows,
column order, dtypes and values (exact equality, no tolerance).  Every field the tables depend
on is given here explicitly, so a change of a default in the shipped configs does not move it.

One documented exception: since issue 14 the GP scores many functions with the batched EP
(``gp.ep_log_orthant_many``), the same sequential EP with its rank-one updates grouped into
blocks, so the ``gp`` rows' ``p`` / ``log10_p`` agree with the per-function path that wrote the
tables to rounding (|Δ ln Z| ~ 1e-11, ``tests/test_ep_batch.py``), not bit for bit: those two
columns of those rows are compared with a relative tolerance of 1e-9; everything else exactly.

A deliberate change of results (new random streams, a different numerical method) must
regenerate the tables, in its own commit that says why:
``python tests/test_golden.py --regenerate``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_sgd.config import config_from_dict
from bayes_sgd.experiment import run_experiment

GOLDEN = Path(__file__).parent / "data" / "golden"

BASE = {
    "seed": 11,
    "task": {"kind": "boolean", "n": 5, "target": "and3", "train_size": 8, "train_seed": 2,
             "train_mask": ""},
    "model": {"arch": "fcn", "widths": [8, 8], "activation": "relu", "sigma_w": 1.0,
              "sigma_b": 1.0},
    "analysis": {"min_counts": [2], "plot": False},
}

# name -> samplers section: rejection (prior recorded) + SGD, scored by the GP (EP, analytic
# kernel); NUTS alone (each case compiles its samplers once, so two cases keep the test short)
CASES = {
    "rej_sgd_gp": {
        "rejection": {"enabled": True, "n_samples": 6000, "chunk_size": 1000,
                      "record_prior": True},
        "sgd": {"enabled": True, "n_runs": 40, "optimizer": "sgd", "lr": 0.1, "batch_size": 4,
                "loss": "bce", "max_epochs": 100},
        "gp": {"enabled": True, "method": "ep", "mode": "joint", "kernel": "analytic",
               "max_functions": 6, "prior_min_count": 10},
    },
    "nuts": {
        "rejection": {"enabled": False},
        "sgd": {"enabled": False},
        "nuts": {"enabled": True, "beta": 30.0, "num_chains": 1, "num_warmup": 40,
                 "num_samples": 40},
    },
}


def golden_config(name: str):
    return config_from_dict({"name": f"golden_{name}", **BASE, "samplers": CASES[name]})


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {f: pd.read_parquet(out / f) for f in ("functions.parquet", "runs.parquet")
            if (out / f).exists()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tables_bit_identical_to_golden(name, tmp_path):
    run_experiment(golden_config(name), tmp_path / name, show_progress=False)
    new, old = _tables(tmp_path / name), _tables(GOLDEN / name)
    assert sorted(new) == sorted(old)
    for f in old:
        assert list(new[f].columns) == list(old[f].columns), f
        assert list(new[f].dtypes) == list(old[f].dtypes), f
        a, b = new[f].copy(), old[f].copy()
        if "sampler" in a:
            gp = (a["sampler"] == "gp").to_numpy()
            assert (gp == (b["sampler"] == "gp").to_numpy()).all(), f
            for col in ("p", "log10_p"):
                np.testing.assert_allclose(a.loc[gp, col].astype(float), b.loc[gp, col].astype(float),
                                           rtol=1e-9, atol=0)
                a.loc[gp, col] = b.loc[gp, col]
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def _regenerate() -> None:
    import shutil
    import tempfile

    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            run_experiment(golden_config(name), Path(tmp) / name, show_progress=False)
            dest = GOLDEN / name
            dest.mkdir(parents=True, exist_ok=True)
            for f in _tables(Path(tmp) / name):
                shutil.copy(Path(tmp) / name / f, dest / f)
            print(name, sorted(_tables(dest)))


if __name__ == "__main__" and "--regenerate" in sys.argv:
    _regenerate()
