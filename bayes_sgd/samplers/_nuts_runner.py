"""The runner's NUTS step: sample the weight-space posterior, tabulate the functions on E.

``run_nuts`` calls ``sample_nuts`` with ``samplers.nuts`` settings and the key
``stream_key(cfg.seed, "nuts")`` and turns the samples that fit S into rows of the function
table: ``count`` is the number of such samples per function (``count_half0/1`` split by chain
parity, for the split-half ceiling), while ``p`` / ``log10_p`` are the importance-weighted
probabilities ``sum_k w_k 1[f_k = f] / sum_k w_k`` over the fitting samples (``w`` =
``exp(NutsResult.log_weights)``), the consistent estimate of P_B(f|S) at any beta (the raw
frequencies are biased towards large margins at finite beta; see ``_nuts``).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..config import NUTSConfig
from ..counting import FunctionCounter, bits_to_strings
from ..function_table import COLUMNS, counter_frame
from ..jsonclean import clean_json
from ._common import stream_key
from ._nuts import NutsResult, sample_nuts
from ._protocol import RunContext, Sampler, SamplerOutput

__all__ = ["NUTSSampler", "nuts_frame", "run_nuts"]


def nuts_frame(res: NutsResult, task) -> pd.DataFrame:
    """Function-table rows (sampler "nuts") from the samples of ``res`` that fit S."""
    fits = np.asarray(res.fits_train, bool)
    bits = np.asarray(res.functions_on_test, bool)[fits]
    counter = FunctionCounter(task.n_test)
    counter.add_bits(bits, half=np.asarray(res.chain)[fits] % 2)
    frame = counter_frame("nuts", counter, task)
    if not len(frame):
        return pd.DataFrame(columns=COLUMNS)
    lw = np.asarray(res.log_weights, np.float64)[fits]
    w = np.exp(lw - lw.max())
    strings = bits_to_strings(bits.astype(np.uint8))
    per_fn = pd.Series(w).groupby(pd.Index(strings)).sum()
    p = per_fn.reindex(frame["function"]).to_numpy() / w.sum()
    frame["p"] = p
    frame["log10_p"] = np.log10(np.where(p > 0, p, np.nan))
    return frame


def run_nuts(cfg, task, model) -> tuple[pd.DataFrame, dict]:
    """Run NUTS as configured in ``cfg.samplers.nuts``; returns (frame, diagnostics).

    The diagnostics are ``NutsResult.diagnostics`` (nan -> None) plus ``n_samples`` (retained
    draws, all chains), ``n_fit`` (those fitting S), ``frac_fits_train``, ``n_functions`` and
    ``wall_time_s``.
    """
    nc = cfg.samplers.nuts
    t0 = time.perf_counter()
    res = sample_nuts(model, task, key=stream_key(cfg.seed, "nuts"), beta=nc.beta,
                      num_chains=nc.num_chains, num_warmup=nc.num_warmup,
                      num_samples=nc.num_samples, thin=nc.thin)
    frame = nuts_frame(res, task)
    n_fit = int(np.sum(res.fits_train))
    diag = dict(res.diagnostics)
    diag.update(n_samples=int(res.n_samples), n_fit=n_fit,
                frac_fits_train=n_fit / max(res.n_samples, 1), n_functions=int(len(frame)),
                wall_time_s=time.perf_counter() - t0)
    return frame, clean_json(diag)


class NUTSSampler(Sampler):
    """Weight-space posterior by NUTS (tempered likelihood, importance-weighted; see ``_nuts``).
    No checkpoint: an interrupted NUTS run starts again."""

    name, stream, config = "nuts", 3, NUTSConfig

    def run(self, ctx: RunContext, state) -> SamplerOutput:
        frame, diag = run_nuts(ctx.cfg, ctx.task, ctx.model)
        return SamplerOutput([frame], diag)
