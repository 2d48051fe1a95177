"""Samplers of P(f|S): ``rejection`` and ``nuts`` (Bayesian posterior), ``sgd`` (P_SGD),
and ``gp`` (P_B from the NNGP limit, in ``bayes_sgd.samplers._gp``)."""
from ._common import EvalLayout, stream_key
from ._rejection import RejectionResult, default_chunk_size, make_chunk_fn, run_rejection_chunks
from ._sgd import SGDResult, SGDSettings, SGDTrainer, make_optimizer

__all__ = ["EvalLayout", "RejectionResult", "SGDResult", "SGDSettings", "SGDTrainer",
           "default_chunk_size", "make_chunk_fn", "make_optimizer", "run_rejection_chunks",
           "stream_key"]
