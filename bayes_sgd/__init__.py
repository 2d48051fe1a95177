"""bayes-sgd: is SGD a Bayesian sampler? Compare P_SGD(f|S) with P_B(f|S).

Pipeline: task -> model -> sampler -> function table -> analysis.  Importing the package (or
``bayes_sgd.results``) does not import JAX; the packages that do (``models``, ``samplers``,
``gp``) first ask for one CPU device per core (``_cpu_devices``).
"""
__version__ = "0.1.0"
