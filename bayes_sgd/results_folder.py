"""The results folder: its lock, manifest, checkpoints and atomically written result files.

A folder holds ``functions.parquet``, ``runs.parquet`` (SGD), ``summary.json``, ``scatter.png``,
``manifest.json`` and ``checkpoints/``.  It is complete when the manifest says
``"status": "complete"``, which is written only after every other file is in place.

Finished results are never deleted or overwritten before new ones are complete: a rerun
validates every checkpoint it will resume from *before* the manifest goes back to
``"running"``, and each result file is replaced atomically only once everything is computed.
A ``.lock`` file (PID and host) keeps a second writer out; a lock left by a dead process on this
host is taken over.  This module does not import JAX.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from ._env import env_seconds
from .checkpoint import atomic_write_json, atomic_write_with, save_npz

__all__ = ["CHECKPOINT_SECONDS", "ResultsFolder", "ResultsFolderError", "checkpoint_seconds",
           "is_complete", "prepare_results_folder", "read_manifest", "why_incomplete"]

CHECKPOINT_SECONDS = 15.0  # default; BAYES_SGD_CHECKPOINT_SECONDS overrides it
RESULT_FILES = ("summary.json", "functions.parquet", "runs.parquet", "scatter.png")


class ResultsFolderError(RuntimeError):
    """The results folder cannot be used (unwritable, another config's, locked, damaged)."""


def checkpoint_seconds() -> float:
    """Seconds between checkpoints: ``$BAYES_SGD_CHECKPOINT_SECONDS`` if set (> 0), else 15."""
    return env_seconds("BAYES_SGD_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None without one; a corrupt one is a ``ResultsFolderError``."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ResultsFolderError(f"--out {folder}: manifest.json is corrupt; use a new folder") from None


def _same_config(manifest: dict, cfg) -> bool:
    """Whether the manifest's config is ``cfg``'s, after filling fields added since it was
    written with their defaults (so a partial run from before a new field resumes)."""
    from .config import ConfigError, config_from_dict

    new = json.loads(json.dumps(cfg.to_dict()))
    if manifest.get("config") == new:
        return True
    old = manifest.get("config", {})
    task = old.get("task") if isinstance(old, dict) else None
    if isinstance(task, dict) and task.get("train_mask"):
        # written before train_size was resolved from the mask: its train_size (the default,
        # ignored then) is not a size given by the user
        old = {**old, "task": {k: v for k, v in task.items() if k != "train_size"}}
    try:
        old = config_from_dict(old)
    except ConfigError:
        return False
    return json.loads(json.dumps(old.to_dict())) == new


def why_incomplete(folder: Path) -> tuple[dict | None, str | None]:
    """-> (manifest, None) when ``folder`` holds a complete run, else (manifest or None, why not).

    Complete: the manifest says ``"status": "complete"`` and the result files it implies
    (``functions.parquet``, ``summary.json``, and ``runs.parquet`` when SGD ran) are there.
    The one completeness check of ``experiment``, ``reproduce`` and ``results``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None, "no such results folder"
    path = folder / "manifest.json"
    if not path.exists():
        return None, "no manifest.json; not a results folder of bayes-sgd run"
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"manifest.json is not valid JSON ({e})"
    status = man.get("status") if isinstance(man, dict) else None
    if status != "complete":
        return man, (f"the run is not complete (manifest status {status!r}); rerun the same "
                     "command to resume it")
    sgd_on = man.get("config", {}).get("samplers", {}).get("sgd", {}).get("enabled", False)
    needed = ["functions.parquet", "summary.json"] + (["runs.parquet"] if sgd_on else [])
    missing = [f for f in needed if not (folder / f).exists()]
    if missing:
        return man, (f"manifest says complete but {', '.join(missing)} "
                     f"{'is' if len(missing) == 1 else 'are'} missing")
    return man, None


def is_complete(folder: Path, cfg=None) -> bool:
    """Whether ``folder`` holds a complete run (of ``cfg``, when given: a folder written before
    a config field was added, with its default, still matches)."""
    man, why = why_incomplete(folder)
    if why is not None:
        return False
    if cfg is None:
        return True
    return _same_config(man, cfg)


def prepare_results_folder(out: Path, cfg) -> None:
    """Create ``out`` and prove it writable before any work starts; refuse a folder that holds
    a run of a different config (rerunning the same config resumes it)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ResultsFolderError(f"--out {out}: the results folder cannot be written ({e.strerror})") from None
    old = read_manifest(out)
    if old is not None and not _same_config(old, cfg):
        raise ResultsFolderError(
            f"--out {out}: the folder holds a run of a different config; choose another "
            "--out (rerunning the same config into a folder resumes it)")


# ---- lock ---------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextmanager
def folder_lock(out: Path):
    """Hold ``out/.lock`` (JSON: pid, host) for the duration.  The file is linked into place
    whole, so a reader never sees it half-written; a lock of a dead process on this host is
    taken over, any other is refused with one line."""
    out = Path(out)
    lock = out / ".lock"
    host = socket.gethostname()
    me = {"pid": os.getpid(), "host": host, "since": _now()}
    tmp = out / f".lock.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(me))
    try:
        for _ in range(2):
            try:
                os.link(tmp, lock)
                break
            except FileExistsError:
                try:
                    held = json.loads(lock.read_text())
                    pid, other = int(held["pid"]), str(held["host"])
                except (OSError, ValueError, KeyError, TypeError):
                    pid, other = None, None  # unreadable: refuse rather than guess
                if other == host and pid is not None and not _alive(pid):
                    lock.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                who = f"process {pid} on {other}" if pid is not None else "another process"
                raise ResultsFolderError(
                    f"--out {out}: the folder is in use by {who} (lock {lock}); wait for it to "
                    "finish, or delete the lock file if that process is gone") from None
        else:
            raise ResultsFolderError(f"--out {out}: could not take the lock {lock}")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():
                lock.unlink()
        except (OSError, ValueError):
            pass


# ---- checkpoints --------------------------------------------------------------------------------

class Checkpoint:
    """One sampler's checkpoint, ``checkpoints/<name>.npz``: arrays in, arrays out."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict | None:
        """The saved arrays, or None if there is none; a damaged file is a one-line
        ``ResultsFolderError`` naming it and what to do."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise self.damaged(f"cannot be read ({type(e).__name__})") from None

    def damaged(self, why: str) -> ResultsFolderError:
        return ResultsFolderError(
            f"checkpoint {self.path} {why}: rerun with --restart to discard the checkpoints "
            "and start over, or delete that file")

    def save(self, **arrays) -> None:
        save_npz(self.path, **arrays)


# ---- the folder ---------------------------------------------------------------------------------

def _versions() -> dict:
    from . import __version__

    out = {"python": platform.python_version(), "bayes-sgd": __version__}
    for pkg in ("jax", "jaxlib", "optax", "numpyro", "numpy", "scipy", "pandas", "pyarrow",
                "matplotlib", "dask", "distributed"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class ResultsFolder:
    """The folder of one run of ``cfg``: ``begin`` (manifest "running"), ``checkpoint(name)``,
    ``write_*`` (atomic) and ``complete`` (manifest "complete", written last)."""

    def __init__(self, out: Path, cfg):
        self.out, self.cfg = Path(out), cfg
        self.manifest: dict = {}

    def checkpoint(self, name: str) -> Checkpoint:
        return Checkpoint(self.out / "checkpoints" / f"{name}.npz")

    def discard_checkpoints(self) -> None:
        """``--restart``: start the samplers over (finished results stay until replaced)."""
        for f in (self.out / "checkpoints").glob("*.npz"):
            f.unlink()

    def begin(self, devices: list[str]) -> None:
        """Write the manifest with ``"status": "running"`` (unless the folder is complete: its
        results are the config's until new ones replace them); result files stay in place."""
        cfg, started = self.cfg, _now()
        self.manifest = {
            "status": "running", "config": cfg.to_dict(),
            "seeds": {"master": cfg.seed, "task_split": cfg.task.train_seed,
                      "streams": "jax.random.fold_in(key(seed), sampler id) then fold_in(chunk or run index)"},
            "versions": _versions(), "git_commit": _git_commit(), "platform": platform.platform(),
            "jax_devices": devices, "command": sys.argv, "started": started,
        }
        old = read_manifest(self.out)
        if old is not None:
            self.manifest["started"] = old.get("started", started)
            self.manifest["resumed"] = started
            if old.get("status") == "complete":
                return  # a finished folder stays finished until the new results are complete
        atomic_write_json(self.out / "manifest.json", self.manifest)

    def write_table(self, name: str, df) -> None:
        atomic_write_with(self.out / name, lambda f: df.to_parquet(f, index=False))

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self.out / name, obj)

    def write_figure(self, name: str, fig) -> None:
        import matplotlib.pyplot as plt

        atomic_write_with(self.out / name, lambda f: fig.savefig(f, dpi=120, format="png"))
        plt.close(fig)

    def remove_stale(self, keep: set[str]) -> None:
        """After the new results are written: drop result files this run did not produce."""
        for name in RESULT_FILES:
            if name not in keep:
                (self.out / name).unlink(missing_ok=True)

    def complete(self, totals: dict) -> None:
        self.manifest.update(status="complete", finished=_now(), totals=totals)
        atomic_write_json(self.out / "manifest.json", self.manifest)
