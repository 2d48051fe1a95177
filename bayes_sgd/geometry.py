"""Distance concentration in parameter space.

For independent x, y ~ N(0, s^2 I_d), ||x - y|| = sqrt(2) s chi_d, so the relative spread of the
distances, std / mean, is that of the chi distribution with d degrees of freedom:
sqrt(d - mu_d^2) / mu_d with mu_d = sqrt(2) Gamma((d+1)/2) / Gamma(d/2), ~ 1 / sqrt(2 d) for
large d.  In high dimension random points are almost all the same distance apart; the question
for SGD's solutions is whether those computing the same function sit measurably closer together
than those computing different ones, and how far each moved from its initialisation.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

__all__ = ["chi_relative_spread", "relative_spread", "pair_distances", "distance_summary"]


def chi_relative_spread(d: int) -> float:
    """std / mean of the distance between two independent N(0, s^2 I_d) vectors (any s)."""
    if int(d) != d or d < 1:
        raise ValueError(f"d: expected a dimension >= 1, got {d!r}")
    c = stats.chi(int(d))
    return float(c.std() / c.mean())


def relative_spread(dist) -> float:
    """std / mean of a sample of distances (nan for fewer than 2)."""
    dist = np.asarray(dist, float)
    if len(dist) < 2 or not dist.mean() > 0:
        return float("nan")
    return float(dist.std(ddof=1) / dist.mean())


def pair_distances(X, labels=None):
    """Euclidean distances between all pairs of rows of ``X`` (n, d); with ``labels`` (one per
    row) also a boolean mask of the pairs whose rows share the label (``pdist``'s order)."""
    X = np.asarray(X, float)
    d = pdist(X)
    if labels is None:
        return d
    lab = np.asarray(labels)
    i, j = np.triu_indices(len(lab), k=1)
    return d, lab[i] == lab[j]


def distance_summary(final, init, functions) -> dict:
    """Distances between solutions with the same vs different functions and from the init.

    ``final``, ``init``: (n, d) flat parameters of n runs after and before training;
    ``functions``: each run's function on E.  Returns means, relative spreads and counts, plus
    the random-init reference (pairs of initialisations) and the chi closed form for d.
    """
    final, init = np.asarray(final, float), np.asarray(init, float)
    d, same = pair_distances(final, functions)
    d_init = pair_distances(init)
    moved = np.linalg.norm(final - init, axis=1)
    out = {"dim": int(final.shape[1]), "n_runs": int(final.shape[0]),
           "chi_relative_spread": chi_relative_spread(final.shape[1])}
    for name, x in (("same_function", d[same]), ("different_function", d[~same]),
                    ("between_inits", d_init), ("from_init", moved)):
        out[name] = {"n": int(len(x)), "mean": float(x.mean()) if len(x) else None,
                     "relative_spread": relative_spread(x)}
    m_s, m_d = out["same_function"]["mean"], out["different_function"]["mean"]
    out["same_over_different"] = m_s / m_d if m_s and m_d else None
    return out
