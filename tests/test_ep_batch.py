"""Batched sequential EP (``gp.ep_log_orthant_many``, ``gp._ep_batch``) against the per-pattern
EP (``log_orthant_probability(..., "ep")``, R&W Alg. 3.5 with rank-one updates and a fresh
factorisation per sweep) and against closed forms / scipy's QMC on small dimensions.

The batched path is the same algorithm with blocked updates and ln|B| from the determinant
lemma instead of a refactorisation, so it must reproduce ln Z to round-off (measured
|Delta ln Z| <= 1e-11 on the cases below; bound 1e-9) and the same sweep counts."""
import numpy as np
import pytest

from bayes_sgd.gp import ep_log_orthant_many, fcn_nngp_kernel, log_orthant_probability


def _wishart(rng, n, dof):
    A = rng.standard_normal((n, dof))
    K = A @ A.T / dof
    sd = np.sqrt(np.diag(K))
    return K / np.outer(sd, sd) * np.outer(*(2 * [rng.uniform(0.5, 2.0, n)]))


def _nngp(rng, n):
    return fcn_nngp_kernel(rng.standard_normal((n, 5)), depth=2, sigma_w=1.4, sigma_b=0.3,
                           activation="relu")


# (name, n, kernel, mean scale, flip probability, block): n not a multiple of the block, one
# block, blocks of one site; strongly correlated Wishart and smooth NNGP kernels; zero and
# random means; sign patterns near and far from the mean's (ln p from ~-1 to ~-60).
CASES = [
    ("wishart-20-mean", 20, "wishart", 0.7, 0.3, 16),
    ("wishart-5-one-block", 5, "wishart", 0.0, 0.5, 16),
    ("nngp-40-zero-mean", 40, "nngp", 0.0, 0.5, 16),
    ("nngp-33-mean-block7", 33, "nngp", 1.0, 0.2, 7),
    ("nngp-12-block1", 12, "nngp", 0.5, 0.4, 1),
]


@pytest.mark.parametrize("name,n,kind,mscale,flip,block", CASES, ids=[c[0] for c in CASES])
def test_batched_ep_equals_per_pattern_ep(name, n, kind, mscale, flip, block):
    rng = np.random.default_rng([n, block, sum(map(ord, name))])
    K = _wishart(rng, n, n + 3) if kind == "wishart" else _nngp(rng, n)
    m = mscale * rng.standard_normal(n) * np.sqrt(np.diag(K))
    base = np.where(m >= 0, 1.0, -1.0) if mscale else rng.choice([-1.0, 1.0], n)
    Y = np.where(rng.random((9, n)) < flip, -base, base)
    res = ep_log_orthant_many(K, Y, mean=m, block=block, chunk=4, threads=2)
    assert res.n_rerun == 0 and (res.row_jitter == 0).all()  # every row ran batched
    for b in range(len(Y)):
        ref = log_orthant_probability(K, Y[b], "ep", mean=m)
        assert ref.info["variant"] == "sequential" and ref.jitter == 0
        assert res.log_p[b] == pytest.approx(ref.log_p, abs=1e-9, rel=1e-11), b
        assert res.n_iter[b] == ref.n_iter and res.converged[b] == ref.converged


def test_batched_ep_against_closed_forms_and_qmc():
    # n = 2 and 3, zero mean: 1/4 + asin(rho)/(2 pi) and 1/8 + sum asin(rho_ij)/(4 pi); n = 6:
    # scipy's QMC ("exact"). EP is exact for n = 1 only; its error here is what the per-pattern
    # EP shows on the same cases (test_orthant: max 0.043 nats on d <= 8). The batched values
    # equal the per-pattern ones to round-off, and both are within 0.08 nats of the reference.
    rng = np.random.default_rng(3)
    for n in (2, 3, 6):
        K = _wishart(rng, n, n + 1)
        Y = rng.choice([-1.0, 1.0], (6, n))
        res = ep_log_orthant_many(K, Y)
        for b in range(len(Y)):
            Kf = K * np.outer(Y[b], Y[b])
            R = Kf / np.sqrt(np.outer(np.diag(Kf), np.diag(Kf)))
            a = np.arcsin(R[np.triu_indices(n, 1)])
            if n == 2:
                ref = np.log(0.25 + a[0] / (2 * np.pi))
            elif n == 3:
                ref = np.log(0.125 + a.sum() / (4 * np.pi))
            else:
                ref = log_orthant_probability(K, Y[b], "exact").log_p
            per = log_orthant_probability(K, Y[b], "ep").log_p
            assert res.log_p[b] == pytest.approx(per, abs=1e-9)
            assert res.log_p[b] == pytest.approx(ref, abs=0.08)


def test_many_takes_the_jitter_policy_of_the_per_pattern_path():
    # A singular K (duplicated inputs): its Cholesky fails, so both paths add the same jitter
    # and reach the same ln Z; {0, 1} and bool signs mean the same as -1/+1.
    rng = np.random.default_rng(8)
    K6 = fcn_nngp_kernel(rng.standard_normal((6, 3)), depth=1, sigma_w=1.5, sigma_b=0.3,
                         activation="relu")
    idx = np.array([0, 1, 2, 3, 4, 5, 0, 2])
    K8 = K6[np.ix_(idx, idx)]
    Y01 = rng.integers(0, 2, (5, 6))[:, idx]
    res = ep_log_orthant_many(K8, Y01)
    res_bool = ep_log_orthant_many(K8, Y01.astype(bool))
    np.testing.assert_array_equal(res.log_p, res_bool.log_p)
    for b in range(len(Y01)):
        ref = log_orthant_probability(K8, Y01[b], "ep")
        assert ref.jitter > 0 and res.row_jitter[b] == ref.jitter
        assert res.log_p[b] == pytest.approx(ref.log_p, abs=1e-9)


def test_many_validates_its_arguments():
    K = np.eye(3)
    with pytest.raises(ValueError, match="signs: expected shape"):
        ep_log_orthant_many(K, np.ones(3))
    with pytest.raises(ValueError, match="signs: expected values"):
        ep_log_orthant_many(K, np.full((2, 3), 2))
    with pytest.raises(ValueError, match="K: expected a symmetric"):
        ep_log_orthant_many(np.triu(np.ones((3, 3))), np.ones((1, 3)))
    assert ep_log_orthant_many(K, np.zeros((0, 3))).log_p.shape == (0,)


@pytest.mark.parametrize("mode,part", [("conditional", 2048), ("joint", 2048), ("joint", 7)])
def test_gp_problem_scores_batched_as_one_by_one(mode, part, monkeypatch):
    # GPProblem.score (the runner's GP step): the batched path, in one call or in parts of 7
    # functions (the progress bar's steps), against the per-function loop on a Boolean task
    # (n = 5, |S| = 12, |E| = 20), random functions on E.
    from bayes_sgd.samplers import GPProblem, _gp

    monkeypatch.setattr(_gp, "SCORE_PART", part)
    from bayes_sgd.tasks import boolean_task

    task = boolean_task(5, "random:3", train_size=12, seed=1)
    problem = GPProblem.from_task(task, lambda x: fcn_nngp_kernel(
        x, depth=2, sigma_w=1.0, sigma_b=1.0, activation="relu"))
    bits = np.random.default_rng(4).integers(0, 2, (25, task.n_test))
    bits[:5] = task.y_test  # the target and functions one bit away from it
    bits[np.arange(1, 5), np.arange(1, 5)] ^= 1
    new = problem.score(bits, method="ep", mode=mode)
    old = problem.score(bits, method="ep", mode=mode, batch=False)
    np.testing.assert_allclose(new.log10_p, old.log10_p, rtol=0, atol=1e-9)
    assert np.isnan(new.log10_p_err).all() and np.isnan(old.log10_p_err).all()
    assert (new.log_P_S, new.n_calls, new.n_not_converged, new.jitter_max) == \
        (old.log_P_S, old.n_calls, old.n_not_converged, old.jitter_max)


def test_zero_variance_coordinates_as_the_per_pattern_path():
    """A zero-variance coordinate (the all-zero Boolean input with sigma_b = 0): the batched path
    gives what ``log_orthant_probability`` gives, pattern by pattern: -inf where its sign is +1
    (z = 0 is labelled 0), the orthant of the other coordinates otherwise."""
    from bayes_sgd.gp import ep_log_orthant_many, log_orthant_probability

    rng = np.random.default_rng(5)
    A = rng.normal(size=(6, 6))
    K = np.zeros((7, 7))
    K[1:, 1:] = A @ A.T + 0.5 * np.eye(6)
    signs = rng.choice([-1.0, 1.0], size=(12, 7))
    signs[:3, 0] = 1.0
    signs[3:6, 0] = -1.0
    got = ep_log_orthant_many(K, signs)
    want = np.array([log_orthant_probability(K, s, "ep").log_p for s in signs])
    assert np.isneginf(got.log_p[:3]).all() and np.isneginf(want[:3]).all()
    np.testing.assert_allclose(got.log_p[3:6], want[3:6], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(np.isneginf(got.log_p), signs[:, 0] > 0)


def test_shared_sign_prefixes_give_the_per_pattern_values():
    # The first sweep runs each block once per distinct prefix of signs (``_first_sweep``):
    # patterns that share S's signs (joint mode) and longer prefixes, duplicated patterns, and
    # one pattern alone, against the per-pattern EP; the batch's row order must not matter.
    rng = np.random.default_rng(21)
    n = 40
    K = _nngp(rng, n)
    m = 0.4 * rng.standard_normal(n) * np.sqrt(np.diag(K))
    base = rng.choice([-1.0, 1.0], n)
    Y = np.where(rng.random((10, n)) < 0.25, -base, base)
    Y[:, :16] = base[:16]  # a prefix shared by all (two blocks of 8)
    Y[5:8, 16:30] = Y[4, 16:30]  # longer prefixes shared by four rows
    Y[8] = Y[2]  # a duplicate
    res = ep_log_orthant_many(K, Y, mean=m, block=8, chunk=16, threads=1)
    perm = rng.permutation(len(Y))
    res_perm = ep_log_orthant_many(K, Y[perm], mean=m, block=8, chunk=16, threads=1)
    np.testing.assert_array_equal(res_perm.log_p, res.log_p[perm])
    assert res.n_rerun == 0
    for b in range(len(Y)):
        ref = log_orthant_probability(K, Y[b], "ep", mean=m)
        assert res.log_p[b] == pytest.approx(ref.log_p, abs=1e-9, rel=1e-11), b
        assert res.n_iter[b] == ref.n_iter



@pytest.mark.parametrize("outer", [16, 32, 48, 200])
def test_spans_of_blocks_give_the_per_pattern_values(outer, monkeypatch):
    # After the first sweep Sigma is updated once per span of OUTER sites (``_sweep``), each
    # block brought up to date from the span's earlier blocks: one block per span, two,
    # three (the last span short: n = 70) and one span for the whole sweep, against the
    # per-pattern EP with the bound used above (1e-9 on ln p) and the same sweep counts.
    from bayes_sgd.gp import _ep_batch

    monkeypatch.setattr(_ep_batch, "OUTER", outer)
    rng = np.random.default_rng(70)
    n = 70
    K = _nngp(rng, n)
    m = 0.5 * rng.standard_normal(n) * np.sqrt(np.diag(K))
    base = np.where(m >= 0, 1.0, -1.0)
    Y = np.where(rng.random((6, n)) < 0.3, -base, base)
    res = ep_log_orthant_many(K, Y, mean=m, block=16, chunk=4, threads=1)
    assert res.n_rerun == 0 and (res.n_iter > 2).all()  # later sweeps ran
    for b in range(len(Y)):
        ref = log_orthant_probability(K, Y[b], "ep", mean=m)
        assert ref.info["variant"] == "sequential"
        assert res.log_p[b] == pytest.approx(ref.log_p, abs=1e-9, rel=1e-11), b
        assert res.n_iter[b] == ref.n_iter

@pytest.mark.parametrize("workers", ["process", "thread"])
def test_chunks_on_processes_or_threads_give_the_one_worker_values(workers):
    # The chunks run on forked processes (the default on Linux) or threads; each chunk's EP is
    # the same computation wherever it runs, so the values must equal those of one worker in
    # this process bit for bit (which the tests above check against the per-pattern EP),
    # with the rows back in their order. BLAS must be left at the thread count it had.
    from threadpoolctl import threadpool_info

    from bayes_sgd.gp._ep_batch import ep_log_orthant_batch

    rng = np.random.default_rng(30)
    n = 24
    K = _nngp(rng, n)
    Y = rng.choice([-1.0, 1.0], (70, n))
    before = [d["num_threads"] for d in threadpool_info()]
    one = ep_log_orthant_batch(K, Y, chunk=8, threads=1)
    par = ep_log_orthant_batch(K, Y, chunk=8, threads=2, workers=workers)
    for a, b in zip(one, par):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(one[0]).all() and one[3].all()
    assert [d["num_threads"] for d in threadpool_info()] == before
    with pytest.raises(ValueError, match="^workers: expected 'auto', 'process' or 'thread'"):
        ep_log_orthant_batch(K, Y, workers="fork")


def _score_in_daemon(K, Y, q):
    from bayes_sgd.gp._ep_batch import ep_log_orthant_batch

    q.put(ep_log_orthant_batch(K, Y, chunk=8, threads=2)[0])


def test_a_daemonic_process_scores_on_threads():
    # a daemonic process (a multiprocessing or Dask worker) may not have children: "auto"
    # must fall back to threads there and give the one-worker values
    import multiprocessing

    from bayes_sgd.gp._ep_batch import ep_log_orthant_batch

    rng = np.random.default_rng(31)
    K = _nngp(rng, 16)
    Y = rng.choice([-1.0, 1.0], (40, 16))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_score_in_daemon, args=(K, Y, q), daemon=True)
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0
    np.testing.assert_array_equal(got, ep_log_orthant_batch(K, Y, chunk=8, threads=1)[0])
