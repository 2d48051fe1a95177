"""The SGD sampler in ``run_experiment``: P_SGD(f|S) from independent runs, checkpointed.

Run ``r``'s random numbers depend on ``r`` alone, so a resumed or distributed run gives the
records and counts of one uninterrupted run.  The run ids still to do are generated lazily:
memory is bounded by the slots and the runs done, never by ``n_runs``.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..config import SGDConfig
from ..counting import FunctionCounter
from ..function_table import counter_frame
from ..interrupts import Interrupted
from ._protocol import RunContext, Sampler, SamplerOutput
from ._sgd import SGDResult, sgd_trainer_and_run_kwargs

__all__ = ["SGDSampler", "runs_frame"]


def runs_frame(res: SGDResult) -> pd.DataFrame:
    """runs.parquet: one row per run (fitted, epochs to fit, epochs trained, diverged)."""
    rows = sorted(res.records.items())
    return pd.DataFrame({
        "run_id": [r for r, _ in rows],
        "fitted": [v[0] for _, v in rows],
        "epochs_to_fit": pd.array([v[1] if v[0] else None for _, v in rows], dtype="Int64"),
        "epochs_trained": [v[2] for _, v in rows],
        "diverged": [v[3] for _, v in rows],
    })


class SGDSampler(Sampler):
    """Random inits trained until they fit S; their functions on E counted."""

    name, stream, config = "sgd", 2, SGDConfig

    def resume(self, ctx: RunContext, ck: dict | None) -> SGDResult:
        done = SGDResult(FunctionCounter(ctx.task.n_test))
        if ck is not None:
            done.counter = FunctionCounter.from_state(
                {"keys": ck["keys"], "counts": ck["counts"], "n_bits": ctx.task.n_test})
            done.records = {int(r): (bool(f), int(fe), int(ep), bool(d)) for r, f, fe, ep, d in
                            zip(ck["run_id"], ck["fitted"], ck["fit_epoch"], ck["epochs"],
                                ck["diverged"])}
            if done.records and max(done.records) >= ctx.cfg.samplers.sgd.n_runs:
                raise ValueError("run ids beyond samplers.sgd.n_runs")
        return done

    def state_arrays(self, res: SGDResult) -> dict:
        keys, counts = res.counter.table()
        arr = np.array([(r, *v) for r, v in sorted(res.records.items())], dtype=np.int64).reshape(-1, 5)
        return dict(keys=keys, counts=counts, run_id=arr[:, 0], fitted=arr[:, 1],
                    fit_epoch=arr[:, 2], epochs=arr[:, 3], diverged=arr[:, 4])

    @staticmethod
    def _with(done: SGDResult, part: SGDResult | None) -> SGDResult:
        """``done`` and this session's ``part`` merged into a new result (both kept)."""
        both = SGDResult(FunctionCounter(done.counter.n_bits))
        both.merge(done)
        if part is not None:
            both.merge(part)
        return both

    def run(self, ctx: RunContext, done: SGDResult) -> SamplerOutput:
        t0 = time.perf_counter()
        part = self._train(ctx, done)
        done.merge(part)
        return self._output(ctx, done, time.perf_counter() - t0)

    def _train(self, ctx: RunContext, done: SGDResult) -> SGDResult:
        sc, task, intr = ctx.cfg.samplers.sgd, ctx.task, ctx.interrupts
        todo = (r for r in range(sc.n_runs) if r not in done.records)
        bar = ctx.progress(sc.n_runs, len(done.records), "sgd", "run")
        fitted, due = [done.n_fitted], ctx.every()
        # the latest consistent state of this session's runs (trainer.run updates its result
        # between syncs, so a signal is held until the next sync; see Interrupts)
        latest: list = [None]
        saved_runs = [0]  # this session's runs in the last checkpoint

        def save(p):
            ctx.save(self, self._with(done, p))

        def progress(n_done, n_fit):
            fitted[0] += n_fit
            bar.update(n_done)
            bar.set_postfix(fitted=fitted[0])

        def on_sync(p):  # every sync (also without finished runs: signals are seen sooner)
            latest[0] = p
            if len(p.records) > saved_runs[0] and due():
                save(p)
                saved_runs[0] = len(p.records)
            if intr.pending:  # at a sync the result is consistent: save it, then stop
                save(p)
                raise Interrupted(intr.pending)

        part = SGDResult(FunctionCounter(task.n_test))
        safe = True
        try:
            if len(done.records) >= sc.n_runs:
                pass
            elif ctx.scheduler is not None:
                part = self._dask(ctx, todo, part, progress, latest, save, due)
            else:
                trainer, run_kw = sgd_trainer_and_run_kwargs(ctx.cfg, task, ctx.model)
                try:
                    with intr.hold():  # trainer.run: signals wait for the next sync (or 5 s)
                        part = trainer.run(todo, progress=progress, on_sync=on_sync, **run_kw)
                except Interrupted:
                    safe = not intr.unsafe
                    raise
                latest[0] = part
        finally:
            bar.close()
            if safe:
                save(latest[0])
            # else: a signal cut trainer.run between syncs; the last periodic checkpoint stands
        intr.raise_pending()
        return part

    def _dask(self, ctx, todo, part, progress, latest, save, due) -> SGDResult:
        from ..distributed import run_sgd_distributed

        trainer, _ = sgd_trainer_and_run_kwargs(ctx.cfg, ctx.task, ctx.model)

        def on_block(block: SGDResult) -> None:
            with ctx.interrupts.critical():
                part.merge(block)
            progress(len(block.records), block.n_fitted)
            latest[0] = part
            if due():
                save(part)

        run_sgd_distributed(ctx.scheduler, ctx.cfg, todo, slots=trainer.P, on_part=on_block)
        return part

    def _output(self, ctx: RunContext, res: SGDResult, seconds: float) -> SamplerOutput:
        runs = runs_frame(res)
        fit = runs["fitted"].to_numpy()
        summary = {
            "n_runs": len(runs), "n_fitted": int(fit.sum()),
            "n_not_fitted": int((~fit & ~runs["diverged"].to_numpy()).sum()),
            "n_diverged": int(runs["diverged"].sum()),
            "n_functions": len(res.counter),
            "epochs_to_fit_median": float(runs.loc[fit, "epochs_to_fit"].median()) if fit.any() else None,
            "epochs_to_fit_mean": float(runs.loc[fit, "epochs_to_fit"].astype(float).mean()) if fit.any() else None,
            "runs_per_s": len(runs) / seconds}
        return SamplerOutput([counter_frame("sgd", res.counter, ctx.task)], summary, res,
                             tables={"runs.parquet": runs})
