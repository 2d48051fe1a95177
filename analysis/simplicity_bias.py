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

# %% tags=["parameters"]
RESULTS = "results/prior_n7/prior"

# %%
import matplotlib.pyplot as plt
import numpy as np
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
# ## Rank plot (Zipf) with a least-squares line in log-log

# %%
fig, ax = plt.subplots(figsize=(6, 4.5))
plotting.rank_plot(df, sampler, ax=ax)
plt.show()
slope, intercept = plotting.rank_fit(df, sampler)
print(f"log10 P = {intercept:.3f} + {slope:.3f} log10 rank")

# %% [markdown]
# ## log10 P(f) vs C_LZ with the upper-bound line
# The line is a least-squares fit through the most probable function at each C_LZ value.
# Functions seen once sit on the floor log10(1 / samples): only functions above it are
# resolved.

# %%
fig, ax = plt.subplots(figsize=(6, 4.5))
plotting.complexity_plot(df, sampler, ax=ax)
ax.axhline(np.log10(1 / max(n_samples, 1)), color="grey", lw=0.8, ls=":", label="seen once")
ax.legend()
plt.show()
b, a = plotting.bound_fit(df, sampler)
print(f"upper bound: log10 P <= {a:.2f} {b:+.4f} C_LZ")

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
