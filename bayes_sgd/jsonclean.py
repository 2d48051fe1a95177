"""JSON-clean values for ``summary.json``: numpy scalars to Python, nan/inf to None."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["clean_json"]


def clean_json(o):
    """``o`` with numpy scalars made Python ones and non-finite floats None (recursively)."""
    if isinstance(o, dict):
        return {k: clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o
