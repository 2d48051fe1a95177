"""bayes-sgd: is SGD a Bayesian sampler? Compare P_SGD(f|S) with P_B(f|S).

Pipeline: task -> model -> sampler -> function table -> analysis.
"""
__version__ = "0.1.0"
