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
# # Is SGD a Bayesian sampler? P_SGD(f|S) against P_B(f|S)
#
# Draws the paper's main comparison (Mingard et al. 2021, JMLR 22(79)) from one results folder
# written by `bayes-sgd run` (or one run of `bayes-sgd reproduce`): the log-log scatter of
# P_SGD(f|S) against the Bayesian posterior P_B(f|S) (rejection sampling, and the GP / NUTS
# estimates when those samplers ran), coloured by complexity C_LZ and by test error; the
# generalisation error of the functions found against their complexity; and the number of
# epochs SGD took to fit S.
#
# Run it on a results folder from the repository root (the executed notebook, figures
# included, is written into the results folder; its kernel runs there, hence `.`):
#
#     jupytext --to notebook analysis/sgd_vs_bayes.py -o results/boolean_n7/sgd_vs_bayes.ipynb
#     BAYES_SGD_RESULTS=. jupyter execute --inplace results/boolean_n7/sgd_vs_bayes.ipynb
#
# or open it in Jupyter (jupytext pairs the `.py` file with a notebook) and set `RESULTS`
# in the cell tagged `parameters` (a papermill-style cell injected after it overrides it).

# %% tags=["parameters"]
import os

RESULTS = os.environ.get("BAYES_SGD_RESULTS", "results/boolean_n7")

# %%
import matplotlib.pyplot as plt
import pandas as pd

from bayes_sgd import plotting, results
from bayes_sgd.figures import comparison_metrics

r = results.load(RESULTS)
df = r.functions
print(r)
samplers = r.samplers
# the GP first where it ran: it scores every function SGD found (the default experiment), while
# rejection's accepted networks rarely repeat a function at |S| = 32 (its cross-check is in the
# summary, agreement.cross_check)
posterior = [s for s in ("gp", "rejection", "nuts") if s in samplers]
x = posterior[0] if posterior else None
has_sgd = "sgd" in samplers

# %% [markdown]
# ## Totals and agreement (from `summary.json`)
# Pearson / Spearman correlation of log10 P over the functions seen at least k times by both
# samplers, with and without the target function; the split-half rows are each sampler's noise
# ceiling.

# %%
rows = []
for pair, by_k in r.summary.get("agreement", {}).get("pairs", {}).items():
    for k, v in by_k.items():
        for which, c in v.items():
            rows.append({"pair": pair, "k": k, "functions": which, **c})
for s, by_k in r.summary.get("agreement", {}).get("split_half", {}).items():
    for k, v in by_k.items():
        for which, c in v.items():
            rows.append({"pair": f"{s} split-half", "k": k, "functions": which, **c})
pd.DataFrame(rows)

# %% [markdown]
# ## P_SGD(f|S) vs P_B(f|S), coloured by C_LZ

# %%
fig = plotting.scatter_panels(df, title=r.name)
plt.show()

# %% [markdown]
# ## The same, coloured by each function's error on the test set E

# %%
if x and has_sgd:
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    plotting.scatter(df, x, "sgd", color="test_error", ax=ax)
    ax.set_title(f"{r.name}: coloured by test error")
    plt.show()
    print(pd.Series(comparison_metrics(df, r.summary, x, "sgd")))
else:
    print(f"needs sgd and a posterior sampler; this folder has {samplers}")

# %% [markdown]
# ## Generalisation error vs complexity of the functions found
# Marker size: how often the sampler found the function.

# %%
counted = [s for s in ("rejection", "sgd", "nuts") if s in samplers]
fig, axes = plt.subplots(1, max(len(counted), 1), figsize=(5 * max(len(counted), 1), 4),
                         squeeze=False)
for ax, s in zip(axes[0], counted):
    plotting.error_vs_complexity(df, s, ax=ax)
    ax.set_title(s)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Epochs to 100 % training accuracy (SGD)

# %%
if r.runs is not None and r.runs["fitted"].any():
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plotting.epochs_histogram(r.runs, ax=axes[0])
    plotting.epochs_by_run(r.runs, ax=axes[1])
    fig.tight_layout()
    plt.show()
    print(r.runs[["fitted", "diverged"]].sum().to_dict(), "of", len(r.runs), "runs")
else:
    print("no SGD runs in this folder")
