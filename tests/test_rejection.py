"""Rejection sampler of P_B(f|S) against an independent numpy rejection sampler.

Setting: the 8 inputs of 3 bits, S = {2, 5, 7} (mask 00100101), target first_bit (S labels
0, 1, 1), FCN 3-4-1 ReLU, sigma_w = sigma_b = 1: about 3.9 % of prior draws fit S and their
functions on the 5 inputs of E spread over ~30 of the 32 possible functions.

Statistics.  Both samplers draw i.i.d. networks from the same prior, so their counts are two
multinomial samples of the same distribution.  Homogeneity is tested with the chi-square test
on the 2 x K contingency table (categories with expected count < 5 pooled); the test fails at
p < 1e-4, a false-failure rate of 1e-4 per comparison (asymptotic chi-square, accurate with
every cell >= 5).  Acceptance rates are compared with the two-proportion z-test at |z| < 4.4
(two-sided 1e-5).  Counting, chunking and key handling are checked exactly.
"""
from __future__ import annotations

from collections import Counter

import jax
import numpy as np
import pytest
from scipy import stats

from bayes_sgd.counting import unpack_bits
from bayes_sgd.models import FCN
from bayes_sgd.samplers import EvalLayout, stream_key
from bayes_sgd.samplers import default_chunk_size, make_chunk_fn, run_rejection_chunks
from bayes_sgd.tasks import boolean_inputs, boolean_task

MODEL = FCN(3, (4,))
TASK = boolean_task(3, "first_bit", mask="00100101")
LAYOUT = EvalLayout.for_task(TASK)
CHUNK = 4096
N_CHUNKS = 64  # 262,144 prior draws, ~10k accepted
STREAM = stream_key(0, "rejection")


def pooled_chi2_p(a: dict, b: dict) -> float:
    """p-value of the chi-square homogeneity test of two count dicts, pooling categories whose
    expected count is < 5 in either row."""
    keys = sorted(set(a) | set(b))
    table = np.array([[a.get(k, 0) for k in keys], [b.get(k, 0) for k in keys]], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    small = (expected < 5).any(0)
    cols = [table[:, ~small]]
    if small.any():
        cols.append(table[:, small].sum(1, keepdims=True))
    return stats.chi2_contingency(np.concatenate(cols, axis=1), correction=False)[1]


def counts_dict(counter) -> dict:
    return counter.to_dict()


@pytest.fixture(scope="module")
def fn_full():
    return make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, record_prior=True)


@pytest.fixture(scope="module")
def fn_s_first():
    return make_chunk_fn(MODEL, LAYOUT, TASK.y_train, CHUNK, record_prior=False)


@pytest.fixture(scope="module")
def full_run(fn_full):
    return run_rejection_chunks(fn_full, STREAM, range(N_CHUNKS), chunk_size=CHUNK,
                                n_samples=N_CHUNKS * CHUNK, n_test=TASK.n_test, n_table=8)


@pytest.fixture(scope="module")
def numpy_run(np_prior_outputs):
    """Plain numpy: draw networks in the NNGP convention, keep those that fit S."""
    rng = np.random.default_rng(12345)
    x = boolean_inputs(3)
    out = np_prior_outputs(rng, (4,), 1.0, 1.0, x, N_CHUNKS * CHUNK)
    bits = (out > 0).astype(np.uint8)
    fits = (bits[:, TASK.train_index] == TASK.y_train).all(1)
    to_str = lambda rows: ["".join(map(str, r)) for r in rows]
    post = Counter(to_str(bits[fits][:, TASK.test_index]))
    prior = Counter(to_str(bits))
    return dict(post=dict(post), prior=dict(prior), n=len(bits), accepted=int(fits.sum()))


def test_posterior_matches_numpy_rejection(full_run, numpy_run):
    post = counts_dict(full_run.posterior)
    assert sum(post.values()) == full_run.n_accepted
    assert all(len(k) == TASK.n_test for k in post)
    p = pooled_chi2_p(post, numpy_run["post"])
    assert p > 1e-4, p
    # the three most frequent functions (10-13 % each) are the same set; the 4th holds 8 %,
    # a gap of > 5 standard errors at ~10^4 accepted samples per sampler
    top = lambda d: sorted(d, key=d.get, reverse=True)[:3]
    assert set(top(post)) == set(top(numpy_run["post"]))


def test_acceptance_rate_matches_numpy(full_run, numpy_run):
    n1, a1 = full_run.n_samples, full_run.n_accepted
    n2, a2 = numpy_run["n"], numpy_run["accepted"]
    assert n1 == N_CHUNKS * CHUNK
    pooled = (a1 + a2) / (n1 + n2)
    z = (a1 / n1 - a2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert abs(z) < 4.4, (a1 / n1, a2 / n2, z)
    assert 0.03 < a1 / n1 < 0.05  # the setting described in the module docstring


def test_prior_over_all_inputs_matches_numpy(full_run, numpy_run):
    prior = counts_dict(full_run.prior)
    assert sum(prior.values()) == full_run.n_samples == N_CHUNKS * CHUNK
    assert full_run.prior.total == N_CHUNKS * CHUNK
    assert all(len(k) == 8 for k in prior)
    assert pooled_chi2_p(prior, numpy_run["prior"]) > 1e-4
    # consistency between the two counters of the same draws: the prior mass of tables that
    # agree with the target on S is exactly the accepted count, and projects onto the posterior
    s, e = TASK.train_index, TASK.test_index
    y = "".join(map(str, TASK.y_train))
    projected: dict = {}
    for f, c in prior.items():
        if "".join(f[i] for i in s) == y:
            key = "".join(f[i] for i in e)
            projected[key] = projected.get(key, 0) + c
    assert projected == counts_dict(full_run.posterior)


def test_halves_follow_chunk_parity(fn_full):
    res = run_rejection_chunks(fn_full, STREAM, [0, 1, 2], chunk_size=CHUNK, n_samples=3 * CHUNK,
                               n_test=TASK.n_test, n_table=8)
    single = [run_rejection_chunks(fn_full, STREAM, [c], chunk_size=CHUNK, n_samples=3 * CHUNK,
                                   n_test=TASK.n_test, n_table=None) for c in (0, 1, 2)]
    _, counts = res.posterior.table()
    assert counts[:, 0].sum() == single[0].n_accepted + single[2].n_accepted
    assert counts[:, 1].sum() == single[1].n_accepted
    assert res.chunks_done == {0, 1, 2}


def test_same_keys_same_counts_and_chunk_convention(fn_full, full_run, np_forward):
    """Chunk c draws model.init(key=fold_in(stream, c), n=chunk_size): re-evaluate chunk 5 in
    numpy from those parameters and compare its counts exactly."""
    again = run_rejection_chunks(fn_full, STREAM, [5], chunk_size=CHUNK, n_samples=N_CHUNKS * CHUNK,
                                 n_test=TASK.n_test, n_table=8)
    params = jax.jit(MODEL.init, static_argnames="n")(key=jax.random.fold_in(STREAM, 5), n=CHUNK)
    params = [{k: np.asarray(v) for k, v in l.items()} for l in params]
    x = boolean_inputs(3)
    bits = np.array([np_forward([{k: v[i] for k, v in l.items()} for l in params], x) > 0
                     for i in range(CHUNK)]).astype(np.uint8)
    fits = (bits[:, TASK.train_index] == TASK.y_train).all(1)
    assert again.n_accepted == int(fits.sum())
    want = Counter("".join(map(str, r)) for r in bits[fits][:, TASK.test_index])
    assert counts_dict(again.posterior) == dict(want)
    assert counts_dict(again.prior) == dict(Counter("".join(map(str, r)) for r in bits))
    # same seed twice -> identical tables
    again2 = run_rejection_chunks(fn_full, STREAM, [5], chunk_size=CHUNK, n_samples=N_CHUNKS * CHUNK,
                                  n_test=TASK.n_test, n_table=8)
    for a, b in ((again.posterior, again2.posterior), (again.prior, again2.prior)):
        for u, v in zip(a.table(), b.table()):
            np.testing.assert_array_equal(u, v)
    # a different seed gives different draws
    other = run_rejection_chunks(fn_full, stream_key(1, "rejection"), [5], chunk_size=CHUNK,
                                 n_samples=N_CHUNKS * CHUNK, n_test=TASK.n_test, n_table=8)
    assert counts_dict(other.prior) != counts_dict(again.prior)


def test_partial_last_chunk_counts_exactly_n_samples(fn_full, fn_s_first):
    n_samples = 3 * CHUNK + 1000
    whole = [run_rejection_chunks(fn_full, STREAM, [c], chunk_size=CHUNK, n_samples=4 * CHUNK,
                                  n_test=TASK.n_test, n_table=8) for c in range(4)]
    for fn, n_table in ((fn_full, 8), (fn_s_first, None)):
        res = run_rejection_chunks(fn, STREAM, range(4), chunk_size=CHUNK, n_samples=n_samples,
                                   n_test=TASK.n_test, n_table=n_table)
        assert res.n_samples == n_samples
        assert res.posterior.total == res.n_accepted
        if n_table:
            assert res.prior.total == n_samples
    # reference for the partial chunk: the first 1000 networks of the full chunk 3
    fits, packed_e, packed_all = fn_full(jax.random.fold_in(STREAM, 3))
    fits = np.asarray(fits)
    assert res.n_accepted == sum(w.n_accepted for w in whole[:3]) + int(fits[:1000].sum())
    ref = Counter()
    for w in whole[:3]:
        ref.update(counts_dict(w.posterior))
    e_bits = unpack_bits(np.asarray(packed_e), TASK.n_test)  # rows = fitting networks, in order
    ref.update("".join(map(str, r)) for r in e_bits[: int(fits[:1000].sum())])
    assert counts_dict(res.posterior) == dict(ref)


def test_s_first_path_equals_full_path(fn_s_first, full_run):
    """record_prior=False evaluates S first and E only for the fitting networks: same keys,
    exactly the same posterior counts (per half) and acceptance."""
    res = run_rejection_chunks(fn_s_first, STREAM, range(N_CHUNKS), chunk_size=CHUNK,
                               n_samples=N_CHUNKS * CHUNK, n_test=TASK.n_test, n_table=None)
    assert res.prior is None
    assert res.n_accepted == full_run.n_accepted and res.n_samples == full_run.n_samples
    for u, v in zip(res.posterior.table(), full_run.posterior.table()):
        np.testing.assert_array_equal(u, v)


def test_chunk_fn_with_no_fits_returns_empty():
    # an S that no network fits in one chunk of 64: 4 labels that the constant-sign output of
    # a tiny net with sigma_w = 0 can never produce (alternating labels, identical nets)
    task = boolean_task(3, "01010101", mask="11110000")
    model = FCN(3, (2,), sigma_w=0.0)  # output = b_out for every input: constant function
    fn = make_chunk_fn(model, EvalLayout.for_task(task), task.y_train, 64, record_prior=False)
    res = run_rejection_chunks(fn, STREAM, [0, 1], chunk_size=64, n_samples=100,
                               n_test=task.n_test, n_table=None)
    assert res.n_samples == 100 and res.n_accepted == 0 and len(res.posterior) == 0


def test_default_chunk_size_bounds():
    for model, n_inputs in ((MODEL, 8), (FCN(7, (40, 40)), 128), (FCN(784, (1024, 1024)), 10_000)):
        c = default_chunk_size(model, n_inputs)
        assert 64 <= c <= 4096 and c & (c - 1) == 0  # a power of two in [64, 4096]
        per_net = 4 * n_inputs * max(model.widths) * 3 + 4 * model.n_params
        assert c == 64 or c * per_net <= 48e6
