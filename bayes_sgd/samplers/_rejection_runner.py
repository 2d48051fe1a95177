"""The rejection sampler in ``run_experiment``: chunks of prior draws, checkpointed.

Chunk ``c`` draws its networks from ``fold_in(stream, c)``, so the counts of a resumed (or
distributed) run equal those of one uninterrupted run with the same chunk size.  The chunks
still to do are generated lazily, a few at a time: memory is bounded by the chunk size and the
work done, never by ``n_samples``.
"""
from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np

from ..config import RejectionConfig
from ..counting import FunctionCounter
from ..function_table import counter_frame
from ._common import EvalLayout, stream_key
from ._protocol import RunContext, Sampler, SamplerOutput
from ._rejection import (RejectionResult, make_chunk_fn, make_shared_chunk_fn, rejection_chunk_size,
                         run_rejection_chunks, run_shared_rejection_chunks)

__all__ = ["PRIOR_MIN_COUNT_IN_MEMORY", "RejectionSampler"]

PRIOR_MIN_COUNT_IN_MEMORY = 2  # prior functions kept in the in-memory table (all are written)
CHUNKS_IN_FLIGHT = 8


class _Clock:
    """Charges the wall time since the last tick to every state that drew samples in it."""

    def __init__(self, states):
        self.states, self.last = states, time.perf_counter()
        self.n = [st.n_samples for st in states]

    def tick(self) -> None:
        now = time.perf_counter()
        for i, st in enumerate(self.states):
            if st.n_samples > self.n[i]:
                st.seconds += now - self.last
                st.timed_samples += st.n_samples - self.n[i]
                self.n[i] = st.n_samples
        self.last = now


class RejectionSampler(Sampler):
    """P_B(f|S) = #kept with f / #kept, over prior draws that classify S exactly."""

    name, stream, config = "rejection", 1, RejectionConfig

    @staticmethod
    def _n_table(ctx: RunContext, layout: EvalLayout) -> int | None:
        rc = ctx.cfg.samplers.rejection
        return len(layout.x) if (rc.record_prior and layout.table_idx is not None) else None

    def resume(self, ctx: RunContext, ck: dict | None) -> RejectionResult:
        rc, task = ctx.cfg.samplers.rejection, ctx.task
        layout = EvalLayout.for_task(task)
        # The automatic chunk size depends on the memory available when the run starts; a
        # resumed run keeps its checkpoint's (chunks are the unit of the random streams).
        k = rc.output_draws
        chunk = rc.chunk_size or (int(ck["chunk_size"]) if ck is not None
                                  else rejection_chunk_size(ctx.model, len(layout.x), k))
        n_table = self._n_table(ctx, layout)
        res = RejectionResult(FunctionCounter(task.n_test),
                              FunctionCounter(n_table) if n_table else None, chunk_size=chunk,
                              output_draws=k)
        if ck is None or int(ck["chunk_size"]) != chunk or int(ck.get("output_draws", 1)) != k:
            return res
        res.posterior = FunctionCounter.from_state(
            {"keys": ck["post_keys"], "counts": ck["post_counts"], "n_bits": task.n_test})
        if n_table:
            res.prior = FunctionCounter.from_state(
                {"keys": ck["prior_keys"], "counts": ck["prior_counts"], "n_bits": n_table})
        # older checkpoints hold a flag per chunk, newer ones the done chunk ids
        done = ck["done_chunks"] if "done_chunks" in ck else np.flatnonzero(ck["done"])
        res.chunks_done = set(np.asarray(done, np.int64).tolist())
        if res.chunks_done and max(res.chunks_done) >= math.ceil(rc.n_samples / chunk):
            raise ValueError("done chunks beyond samplers.rejection.n_samples")
        res.n_samples, res.n_accepted = int(ck["n_samples"]), int(ck["n_accepted"])
        # checkpoints before the group statistics: independent draws, one network a group
        res.n_groups = int(ck.get("n_groups", res.n_samples))
        res.sum_accepted_sq = int(ck.get("sum_accepted_sq", res.n_accepted))
        res.seconds = float(ck.get("seconds", 0.0))
        res.timed_samples = int(ck.get("timed_samples", 0))
        res.shared_runs = int(ck.get("shared_runs", 1))
        return res

    def state_arrays(self, res: RejectionResult) -> dict:
        pk, pc = res.posterior.table()
        arrays = dict(chunk_size=res.chunk_size, done_chunks=np.array(sorted(res.chunks_done), np.int64),
                      n_samples=res.n_samples, n_accepted=res.n_accepted, post_keys=pk,
                      post_counts=pc, output_draws=res.output_draws, n_groups=res.n_groups,
                      sum_accepted_sq=res.sum_accepted_sq, seconds=res.seconds,
                      timed_samples=res.timed_samples, shared_runs=res.shared_runs)
        if res.prior is not None:
            arrays["prior_keys"], arrays["prior_counts"] = res.prior.table()
        return arrays

    def run(self, ctx: RunContext, res: RejectionResult) -> SamplerOutput:
        t0 = time.perf_counter()
        self._sample(ctx, res)
        return self._output(ctx, res, time.perf_counter() - t0)

    @staticmethod
    def share_key(cfg) -> str | None:
        """Runs with the same key draw the same networks and test them on the same inputs
        (seed, model, task but for its target and S, rejection settings): ``run_shared`` can
        sample them in one pass.  None: rejection is off or the task is not Boolean."""
        if not cfg.samplers.rejection.enabled or cfg.task.kind != "boolean":
            return None
        d = cfg.to_dict()
        task = {k: v for k, v in d["task"].items()
                if k not in ("target", "train_mask", "train_size", "train_seed")}
        return json.dumps({"seed": d["seed"], "task": task, "model": d["model"],
                           "rejection": d["samplers"]["rejection"]}, sort_keys=True, default=str)

    def run_shared(self, ctxs: list[RunContext], states: list[RejectionResult]) -> None:
        """Sample the rejection of several runs in ONE pass over the prior.

        The runs (``ctxs``, their states ``states`` from ``resume``) must have one
        ``share_key``, the same inputs and the same chunk size; they differ in the target and
        S.  Chunk c is drawn once, as each run's own pass would draw it
        (``fold_in(stream_key(seed, "rejection"), c)``), and counted for every run that does
        not hold it yet (``run_shared_rejection_chunks``): each run's checkpoint ends as its
        own pass would have left it, saved as often, and ``run`` then only writes its outputs.
        The pass's wall time is charged to every run (``samples_per_s`` is the pass's rate;
        summary ``shared_pass_runs`` says how many shared it)."""
        c0, s0 = ctxs[0], states[0]
        rc = c0.cfg.samplers.rejection
        layouts = [EvalLayout.for_task(ctx.task) for ctx in ctxs]
        key0 = self.share_key(c0.cfg)
        for ctx, lay, st in zip(ctxs, layouts, states):
            if (key0 is None or self.share_key(ctx.cfg) != key0 or lay.table_idx is None
                    or not np.array_equal(lay.x, layouts[0].x) or st.chunk_size != s0.chunk_size
                    or st.output_draws != s0.output_draws):
                raise ValueError(f"{ctx.out}: its rejection cannot share a pass with "
                                 f"{c0.out} (another seed, model, inputs or chunk size)")
        chunk, n_table = s0.chunk_size, self._n_table(c0, layouts[0])
        todo = (c for c in range(math.ceil(rc.n_samples / chunk))
                if any(c not in st.chunks_done for st in states))
        first = list(itertools.islice(todo, CHUNKS_IN_FLIGHT))
        for st in states:
            st.shared_runs = max(st.shared_runs, len(states))
        bar = c0.progress(rc.n_samples, min(st.n_samples for st in states),
                          f"rejection ({len(states)} targets)", "net", unit_scale=True)
        due, clock = c0.every(), _Clock(states)

        def save_all() -> None:
            clock.tick()
            for ctx, st in zip(ctxs, states):
                ctx.save(self, st)

        try:
            if first:
                import jax

                fn = make_shared_chunk_fn(c0.model, layouts[0].x,
                                          [(lay.s_idx, ctx.task.y_train)
                                           for lay, ctx in zip(layouts, ctxs)],
                                          chunk, n_table is not None,
                                          output_draws=rc.output_draws)
                kw = dict(chunk_size=chunk, n_samples=rc.n_samples, n_table=n_table,
                          e_idx=[lay.e_idx for lay in layouts], devices=jax.devices())
                stream = stream_key(c0.cfg.seed, "rejection")
                batch = first
                while batch:
                    parts = run_shared_rejection_chunks(
                        fn, stream, batch, skip=[st.chunks_done for st in states], **kw)
                    with c0.interrupts.critical():  # every run's counts and chunks together
                        for st, part in zip(states, parts):
                            st.merge(part)
                    bar.update(sum(min(chunk, rc.n_samples - c * chunk) for c in batch))
                    bar.set_postfix(accepted=[st.n_accepted for st in states])
                    if due():
                        save_all()
                    batch = list(itertools.islice(todo, CHUNKS_IN_FLIGHT))
        finally:
            save_all()  # states are consistent: merges are never cut in half
            bar.close()

    def _sample(self, ctx: RunContext, res: RejectionResult) -> None:
        rc, task = ctx.cfg.samplers.rejection, ctx.task
        layout = EvalLayout.for_task(task)
        chunk, n_table = res.chunk_size, self._n_table(ctx, layout)
        todo = (c for c in range(math.ceil(rc.n_samples / chunk)) if c not in res.chunks_done)
        first = list(itertools.islice(todo, CHUNKS_IN_FLIGHT))
        bar = ctx.progress(rc.n_samples, res.n_samples, "rejection", "net", unit_scale=True)
        due, clock = ctx.every(), _Clock([res])

        def merge(part: RejectionResult) -> None:
            with ctx.interrupts.critical():  # counts and the list of done chunks change together
                res.merge(part)
            bar.update(part.n_samples)
            bar.set_postfix(accepted=res.n_accepted,
                            rate=f"{res.n_accepted / max(res.n_samples, 1):.1e}")
            if due():
                clock.tick()
                ctx.save(self, res)

        try:
            if ctx.scheduler is not None and first:
                from ..distributed import run_rejection_distributed
                run_rejection_distributed(ctx.scheduler, ctx.cfg, itertools.chain(first, todo),
                                          show=False, chunk_size=chunk, on_part=merge)
            elif first:
                import jax

                fn = make_chunk_fn(ctx.model, layout, task.y_train, chunk, n_table is not None,
                                   output_draws=rc.output_draws)
                devices = jax.devices()  # chunk c on devices[c % len]: results do not depend on it
                kw = dict(chunk_size=chunk, n_samples=rc.n_samples, n_test=task.n_test,
                          n_table=n_table)
                stream = stream_key(ctx.cfg.seed, "rejection")
                batch = first
                while batch:
                    merge(run_rejection_chunks(fn, stream, batch, devices=devices, **kw))
                    batch = list(itertools.islice(todo, CHUNKS_IN_FLIGHT))
        finally:
            clock.tick()
            ctx.save(self, res)  # res is consistent: merges are never cut in half
            bar.close()

    def _output(self, ctx: RunContext, res: RejectionResult, seconds: float) -> SamplerOutput:
        task = ctx.task
        frames = [counter_frame("rejection", res.posterior, task)]
        full = {}
        if res.prior is not None:
            # The prior's table can hold millions of functions (10^8 draws): it goes to
            # functions.parquet in batches; the frame in memory keeps the functions seen
            # samplers.gp.prior_min_count times or more (>= 2), all the analysis uses.
            frames.append(counter_frame(
                "prior", res.prior, task, full_table=True,
                min_count=max(PRIOR_MIN_COUNT_IN_MEMORY, ctx.cfg.samplers.gp.prior_min_count)))
            full["prior"] = res.prior
        summary = {
            "n_samples": res.n_samples, "n_accepted": res.n_accepted,
            "acceptance_rate": res.n_accepted / max(res.n_samples, 1),
            "log10_P_S_sampled": math.log10(res.n_accepted / res.n_samples) if res.n_accepted else None,
            "n_functions": len(res.posterior), "chunk_size": res.chunk_size,
            # the timed sessions' rate (a shared pass: the pass's); untimed (a checkpoint
            # from before the clock was kept): all samples over this session's time
            "samples_per_s": res.samples_per_s() or res.n_samples / max(seconds, 1e-9),
            "output_draws": res.output_draws,
            "ess": res.effective_sample_sizes()}
        if res.shared_runs > 1:
            summary["shared_pass_runs"] = res.shared_runs
        return SamplerOutput(frames, summary, res, full_tables=full)
