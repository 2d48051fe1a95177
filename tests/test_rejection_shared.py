"""Rejection with several output layers per hidden-layer draw (``output_draws`` K > 1).

Setting: as ``tests/test_rejection.py`` but FCN 3-8-1 (so that the shared hidden layer is a
real layer of width 8): 8 inputs of 3 bits, S = {2, 5, 7}, target first_bit, ~4 % of prior
draws fit S.

* Exactness: the chunk's networks, assembled in the model's layout, give the same fits on S
  and functions on E through ``model.apply`` (bit for bit, integer comparisons).
* Distribution: the K = 32 estimate of P_B(f|S) for the 6 most frequent functions against the
  independent sampler (K = 1).  Networks of one hidden draw are dependent, so the K = 32
  standard error is the cluster-robust (linearised ratio-estimator) one over hidden draws;
  the independent one is binomial.  The test fails if |z| > 4.5 for any of the 6 functions:
  a false-failure rate below 6 x 6.8e-6 = 4e-5 for correct samplers.
* ESS: the statistics the runner keeps (hidden draws, sum over draws of accepted^2) equal a
  brute-force recount from the chunks' fits, and the ESS formulas equal their closed forms.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayes_sgd.models import FCN
from bayes_sgd.samplers import EvalLayout, stream_key
from bayes_sgd.samplers import make_chunk_fn, run_rejection_chunks
from bayes_sgd.tasks import boolean_task

MODEL = FCN(3, (8,))
TASK = boolean_task(3, "first_bit", mask="00100101")
LAYOUT = EvalLayout.for_task(TASK)
CHUNK, K = 4096, 32
STREAM = stream_key(0, "rejection")


def _chunks(fn, ids):
    """fits (n,) and the packed E rows of the fitting networks, per chunk."""
    return [fn(jax.random.fold_in(STREAM, c)) for c in ids]


def test_shared_chunk_matches_model_apply():
    fn = make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, False, output_draws=K)
    key = jax.random.fold_in(STREAM, 3)
    params = fn.shared_params(key)
    assert params[0]["w"].shape == (CHUNK, 3, 8) and params[-1]["w"].shape == (CHUNK, 8, 1)
    # networks of one group share the hidden layer, and only those
    w0 = np.asarray(params[0]["w"])
    assert np.array_equal(w0[0], w0[K - 1]) and not np.array_equal(w0[0], w0[K])
    out = np.asarray(MODEL.apply_batched(params, jnp.asarray(LAYOUT.x)))
    fits_ref = ((out[:, LAYOUT.s_idx] > 0) == np.asarray(TASK.y_train, bool)).all(1)
    fits, packed_e, _ = fn(key)
    fits = np.asarray(fits)
    assert fits_ref.sum() > 50
    np.testing.assert_array_equal(fits, fits_ref)
    e_ref = np.packbits(out[fits_ref][:, LAYOUT.e_idx] > 0, axis=1)
    np.testing.assert_array_equal(np.asarray(packed_e), e_ref)


def _per_function(chunks, k):
    """Per-group accepted counts and, for every function, per-group counts."""
    groups = CHUNK // k
    a = np.concatenate([np.asarray(f).reshape(groups, k).sum(1) for f, _, _ in chunks])
    z = {}
    for c, (f, packed, _) in enumerate(chunks):
        g = c * groups + np.flatnonzero(np.asarray(f)) // k
        for row, gi in zip(map(bytes, np.asarray(packed)), g):
            z.setdefault(row, np.zeros(len(a)))[gi] += 1
    return a, z


def test_shared_posterior_matches_independent_sampling():
    ind = _chunks(make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, False), range(48))
    shr = _chunks(make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, False, output_draws=K),
                  range(1000, 1048))
    a1, z1 = _per_function(ind, 1)
    ak, zk = _per_function(shr, K)
    n1, nk = a1.sum(), ak.sum()
    assert n1 > 5000 and nk > 5000
    top = sorted(z1, key=lambda f: -z1[f].sum())[:6]
    g = len(ak)
    for f in top:
        p1 = z1[f].sum() / n1
        se1 = np.sqrt(p1 * (1 - p1) / n1)
        zf = zk.get(f, np.zeros(g))
        r = zf.sum() / nk
        se_k = np.sqrt(g / (g - 1) * ((zf - r * ak) ** 2).sum()) / nk  # cluster-robust
        assert abs(r - p1) / np.hypot(se1, se_k) < 4.5, (f, p1, r, se1, se_k)
    # the acceptance rate (P(S)) likewise, with the groups' variance
    pa1, pak = n1 / a1.size, nk / (g * K)
    se_a1 = np.sqrt(pa1 * (1 - pa1) / a1.size)
    se_ak = np.sqrt(ak.var(ddof=1) / g) / K
    assert abs(pa1 - pak) / np.hypot(se_a1, se_ak) < 4.5


def test_ess_statistics_match_a_recount():
    fn = make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, False, output_draws=K)
    n_samples = 8 * CHUNK - 100  # a partial last chunk: its last group is partial too
    res = run_rejection_chunks(fn, STREAM, range(8), chunk_size=CHUNK, n_samples=n_samples,
                               n_test=TASK.n_test, n_table=None)
    fits = np.concatenate([np.asarray(f) for f, _, _ in _chunks(fn, range(8))])[:n_samples]
    a = np.add.reduceat(fits.astype(int), np.arange(0, n_samples, K))
    assert (res.n_groups, res.n_accepted, res.sum_accepted_sq) == (len(a), a.sum(), (a ** 2).sum())
    ess = res.effective_sample_sizes()
    p = a.sum() / n_samples
    deff = a.var(ddof=1) / (K * p * (1 - p))
    np.testing.assert_allclose(ess["acceptance"], n_samples / deff, rtol=1e-9)
    np.testing.assert_allclose(ess["posterior_lower"], a.sum() ** 2 / (a ** 2).sum(), rtol=1e-12)
    # independent draws: the posterior bound is the number accepted, the acceptance ESS ~ n
    ind = run_rejection_chunks(make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, False), STREAM,
                               range(8), chunk_size=CHUNK, n_samples=8 * CHUNK,
                               n_test=TASK.n_test, n_table=None)
    e1 = ind.effective_sample_sizes()
    assert e1["posterior_lower"] == ind.n_accepted
    np.testing.assert_allclose(e1["acceptance"], 8 * CHUNK - 1, rtol=1e-9)  # n / (n / (n - 1))
