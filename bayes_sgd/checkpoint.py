"""Atomic writes, so that an interrupted run never leaves a half-written file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_write_with(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, then rename it into place:
    readers see the old or the new file, never a part (and nothing is buffered in memory)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def save_npz(path: Path, **arrays) -> None:
    # straight to the file: a checkpoint of 10^7 distinct functions is ~300 MB, and an
    # in-memory buffer would hold it twice more
    atomic_write_with(path, lambda f: np.savez(f, **arrays))


def load_npz(path: Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
