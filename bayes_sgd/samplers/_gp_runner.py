"""The GP scorer in ``run_experiment``: P_B(f|S) in the NNGP limit for the functions that the
counting samplers found (see ``_gp.run_gp``).  No checkpoint: scoring is redone on resume."""
from __future__ import annotations

from ..config import GPConfig
from ._protocol import RunContext, Sampler, SamplerOutput

__all__ = ["GPSampler"]


class GPSampler(Sampler):
    name, stream, config = "gp", 4, GPConfig

    def run(self, ctx: RunContext, state) -> SamplerOutput:
        from ._gp import run_gp

        frame, summary = run_gp(ctx.cfg, ctx.task, ctx.model, ctx.frame, show=ctx.show)
        rej = ctx.outputs.get("rejection")
        if rej is not None and "prior" in rej.full_tables and "prior_vs_sampling" in summary:
            # the frame holds the repeated prior functions only; the counter has them all
            summary["prior_vs_sampling"]["n_distinct_sampled"] = len(rej.full_tables["prior"])
        if "sgd" in ctx.outputs and summary.get("pac_bayes_bound") is not None:
            sgd = ctx.frame[ctx.frame["sampler"] == "sgd"]
            w = sgd["count"].astype(float)
            summary["sgd_mean_test_error"] = float((sgd["test_error"] * w).sum() / w.sum())
        return SamplerOutput([frame], summary)
