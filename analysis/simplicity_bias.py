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
# # Simplicity bias of the prior P(f)
#
# Valle-Pérez et al. (2019) and Dingle et al. (2018): functions of a randomly initialised
# network are far from equally likely; P(f) spans many decades, falls roughly as a power of
# its rank (Zipf), and is bounded above by a line decreasing in the Lempel-Ziv complexity
# C_LZ of the truth table.  Needs a results folder run with
# `samplers.rejection.record_prior = true`, e.g. the one of `bayes-sgd reproduce prior_n7`
# (`results/prior_n7/prior`).  Without prior rows the notebook falls back to the posterior
# P_B(f|S) of rejection sampling.
#
# Run it on a results folder from the repository root (the executed notebook, figures
# included, is written into the results folder; its kernel runs there, hence `.`):
#
#     jupytext --to notebook analysis/simplicity_bias.py -o results/prior_n7/prior/simplicity_bias.ipynb
#     BAYES_SGD_RESULTS=. jupyter execute --inplace results/prior_n7/prior/simplicity_bias.ipynb
#
# or open it in Jupyter (jupytext pairs the `.py` file with a notebook) and set `RESULTS`
# in the cell tagged `parameters` (a papermill-style cell injected after it overrides it).

# %% tags=["parameters"]
import os

RESULTS = os.environ.get("BAYES_SGD_RESULTS", "results/prior_n7/prior")

# %%
import matplotlib.pyplot as plt
import pandas as pd

from bayes_sgd import plotting, results

r = results.load(RESULTS)
df = r.functions
print(r)
sampler = "prior" if "prior" in r.samplers else "rejection"
if sampler != "prior":
    print("no prior rows (record_prior was off): showing the rejection posterior P_B(f|S)")
sub = df[df["sampler"] == sampler]
n_samples = int(sub["count"].astype(float).sum())
print(f"{len(sub):,} distinct functions in {n_samples:,} samples")

# %% [markdown]
# ## Rank plot (Zipf)
# With N samples, every function seen once sits at P = 1/N (dotted line): only functions seen
# at least `MIN_COUNT` times are resolved, and the Zipf line is fitted on them alone.

# %%
MIN_COUNT = 10
fig, ax = plt.subplots(figsize=(6.5, 4.5))
plotting.zipf_plot(df, sampler, min_count=MIN_COUNT, ax=ax)
plt.show()
slope, intercept, n_res = plotting.zipf_fit(df, sampler, min_count=MIN_COUNT)
print(f"{n_res} functions seen >= {MIN_COUNT} times: log10 P = {intercept:.3f} {slope:+.3f} log10 rank")

# %% [markdown]
# ## log10 P(f) vs C_LZ with the upper-bound line (Dingle et al. 2018)
# The line is a least-squares fit through the most probable resolved function at each C_LZ.

# %%
fig, ax = plt.subplots(figsize=(6.5, 4.5))
plotting.simplicity_plot(df, sampler, min_count=MIN_COUNT, ax=ax)
plt.show()
b, a = plotting.simplicity_fit(df, sampler, min_count=MIN_COUNT)
print(f"upper bound: log10 P <= {a:.2f} {b:+.4f} C_LZ")

# %% [markdown]
# ## The same fits over every sampled function
# `rank_plot` / `complexity_plot` fit all functions, singletons included: with few samples the
# lines then describe the sampling floor more than P(f).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
plotting.rank_plot(df, sampler, ax=axes[0])
plotting.complexity_plot(df, sampler, ax=axes[1])
fig.tight_layout()
plt.show()
print("rank fit (all):", plotting.rank_fit(df, sampler), "bound fit (all):", plotting.bound_fit(df, sampler))

# %% [markdown]
# ## How much probability sits at each complexity
# The total P of the sampled functions at each C_LZ, and the number of distinct functions.

# %%
by_lz = sub.groupby("lz").agg(P=("p", "sum"), functions=("function", "size"))
fig, ax = plt.subplots(figsize=(6, 4))
ax.bar(by_lz.index, by_lz["P"], width=2.5)
ax.set_yscale("log"), ax.set_xlabel(r"$C_{LZ}$"), ax.set_ylabel("total probability")
plt.show()
by_lz.head(15)

# %% [markdown]
# ## The most probable functions

# %%
top = sub.sort_values("count", ascending=False).head(10)
pd.DataFrame({"function": top["function"].str.slice(0, 40) + "…", "P": top["p"],
              "C_LZ": top["lz"], "ones": top["ones"]})
