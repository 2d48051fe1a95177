# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # P_SGD vs P_B across runs: optimisers, batch sizes, targets
#
# Joins every complete results folder under `RESULTS` (a figure folder of
# `bayes-sgd reproduce`, e.g. `results/optimisers_n7`, or any folder of runs) and draws one
# P_SGD vs P_B panel per run.  A run named `bayes` (rejection only) supplies P_B to the SGD-only
# runs of the same task.  Set `ROW` / `COL` to lay the grid out by config fields (`optimizer`,
# `batch_size`, `lr`, `target`, `epochs_after_fit`, ... see `bayes_sgd.results.CONFIG_COLUMNS`).
#
# Run it on a results folder from the repository root (the executed notebook, figures
# included, is written into the results folder; its kernel runs there, hence `.`):
#
#     jupytext --to notebook analysis/runs_grid.py -o results/optimisers_n7/runs_grid.ipynb
#     BAYES_SGD_RESULTS=. jupyter execute --inplace results/optimisers_n7/runs_grid.ipynb
#
# or open it in Jupyter (jupytext pairs the `.py` file with a notebook) and set `RESULTS`
# in the cell tagged `parameters` (a papermill-style cell injected after it overrides it).

# %% tags=["parameters"]
import os

RESULTS = os.environ.get("BAYES_SGD_RESULTS", "results/optimisers_n7")
ROW = None
COL = "run"
X = None  # the P_B sampler on the x axis; None: rejection, else gp, else nuts

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bayes_sgd import plotting, results
from bayes_sgd.figures import comparison_metrics

folders = sorted(p for p in Path(RESULTS).iterdir()
                 if (p / "manifest.json").exists() and p.name != "bayes")
reference = Path(RESULTS) / "bayes"
reference = reference if (reference / "manifest.json").exists() else None
df = results.join(folders, labels=[p.name for p in folders], reference=reference)
runs = results.join_runs(folders, labels=[p.name for p in folders])
present = set(df["sampler"])
x = X or next((s for s in ("rejection", "gp", "nuts") if s in present), "rejection")
print(f"{len(folders)} runs:", [p.name for p in folders], f"| P_B ({x}) from", reference or "each run")
df.groupby(["run", "sampler"], observed=True).size().unstack()

# %% [markdown]
# ## One scatter per run

# %%
fig = plotting.grid(df, row=ROW, col=COL, x=x)
plt.show()

# %% [markdown]
# ## Measured agreement per run

# %%
ref_summary = results.load(reference).summary if reference else {}
table = {}
for p in folders:
    sub = df[df["run"] == p.name]
    m = comparison_metrics(sub, {**ref_summary, **results.load(p).summary}, x=x)
    table[p.name] = {"functions (k>=1)": m["k=1"]["n_functions"], "pearson k>=1": m["k=1"]["pearson"],
                     "spearman k>=1": m["k=1"]["spearman"], "functions (k>=2)": m["k=2"]["n_functions"],
                     "pearson k>=2": m["k=2"]["pearson"],
                     "test error SGD": m.get("sgd_mean_test_error"),
                     "test error P_B": m.get(f"{x}_mean_test_error")}
pd.DataFrame(table).T

# %% [markdown]
# ## Epochs to fit S, per run

# %%
if len(runs):
    fig, ax = plt.subplots(figsize=(7, 4))
    plotting.epochs_by_run(runs, ax=ax)
    plt.show()
