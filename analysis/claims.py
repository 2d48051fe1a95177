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
# # The claims around the paper (issue 15), measured
#
# Draws one of the claims' figures from a figure folder of `bayes-sgd reproduce` and shows the
# numbers behind it: `width_n7` (more is more), `random_labels_n7`, `flatness_n7` (Hessian
# sharpness vs the function-space volume log P_B), `distance_n7` (distance concentration) and
# `optimisers_mnist` (optimiser / batch on MNIST).  The figure kind comes from the folder's
# name (`bayes_sgd.reproduce.FIGURES`); any other folder of runs is drawn as a table of runs.
#
#     jupytext --to notebook analysis/claims.py -o results/width_n7/claims.ipynb
#     BAYES_SGD_RESULTS=. jupyter execute --inplace results/width_n7/claims.ipynb
#
# or open it in Jupyter and set `RESULTS` in the cell tagged `parameters`.

# %% tags=["parameters"]
import os

RESULTS = os.environ.get("BAYES_SGD_RESULTS", "results/width_n7")
KIND = None  # None: from the figure's name; else one of bayes_sgd.claims.KINDS

# %%
import json
from pathlib import Path

import pandas as pd

from bayes_sgd import claims
from bayes_sgd.reproduce import FIGURES

root = Path(RESULTS)
spec = FIGURES.get(root.name)
kind = KIND or (spec.kind if spec is not None and spec.kind in claims.KINDS else "runs_table")
if spec is not None:
    folders = {r.name: root / r.name for r in spec.runs if (root / r.name / "manifest.json").exists()}
else:
    folders = {p.name: p for p in sorted(root.iterdir()) if (p / "manifest.json").exists()}
print(kind, list(folders))

# %%
fig, metrics = claims.draw(kind, folders)
fig

# %% [markdown]
# The measured numbers (nested entries flattened):

# %%
pd.json_normalize([{"run": k, **v} for k, v in metrics.items()]).set_index("run").T
