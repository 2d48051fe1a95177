"""Samplers of P(f|S): ``rejection`` and ``nuts`` (Bayesian posterior), ``sgd`` (P_SGD), and
the ``gp`` scorer (P_B from the NNGP limit).

Each is a ``Sampler`` (``_protocol``) registered here; ``run_experiment`` loops over the enabled
ones.  A new sampler is one module with its ``Sampler`` subclass and config section, plus one
``register`` line below (see the README's architecture section).
"""
from .._cpu_devices import use_one_device_per_core

use_one_device_per_core()  # before any JAX backend starts (see bayes_sgd._cpu_devices)
from ._common import EvalLayout, pack_bits_jax, stream_key
from ._gp import (PRIOR_SAMPLER, GPProblem, Scores, candidate_functions, compare_modes, gp_kernel,
                  prior_vs_sampling, run_gp)
from ._gp_runner import GPSampler
from ._nuts import NutsResult, sample_nuts
from ._nuts_runner import NUTSSampler, nuts_frame, run_nuts
from ._protocol import (REGISTRY, RunContext, Sampler, SamplerOutput, counting_names,
                        enabled_samplers, register, unregister)
from ._rejection import (RejectionResult, SharedRejectionChunkFn, default_chunk_size,
                         make_chunk_fn, make_shared_chunk_fn, rejection_chunk_size,
                         run_rejection_chunks, run_shared_rejection_chunks)
from ._rejection_runner import RejectionSampler
from ._sgd import (SGDResult, SGDSettings, SGDTrainer, epoch_permutation, loss_fn,
                   make_optimizer, sgd_trainer_and_run_kwargs)
from ._sgd_runner import SGDSampler, runs_frame

# registration order: the order of the counting samplers' rows and of the config sections
for _s in (RejectionSampler(), SGDSampler(), GPSampler(), NUTSSampler()):
    register(_s)
del _s

__all__ = ["EvalLayout", "GPProblem", "GPSampler", "NUTSSampler", "NutsResult", "PRIOR_SAMPLER",
           "REGISTRY", "RejectionResult", "RejectionSampler", "RunContext", "SGDResult",
           "SGDSampler", "SGDSettings", "SGDTrainer", "Sampler", "SamplerOutput", "Scores",
           "SharedRejectionChunkFn", "candidate_functions", "compare_modes", "counting_names",
           "default_chunk_size", "enabled_samplers", "epoch_permutation", "gp_kernel", "loss_fn",
           "make_chunk_fn", "make_optimizer", "make_shared_chunk_fn", "nuts_frame",
           "pack_bits_jax", "prior_vs_sampling", "register", "rejection_chunk_size", "run_gp",
           "run_nuts", "run_rejection_chunks", "run_shared_rejection_chunks", "runs_frame",
           "sample_nuts", "sgd_trainer_and_run_kwargs", "stream_key", "unregister"]
