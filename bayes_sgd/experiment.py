"""Run an experiment end to end: task -> model -> samplers -> function table -> analysis.

A results folder holds ``functions.parquet``, ``runs.parquet`` (SGD), ``summary.json``,
``scatter.png`` and ``manifest.json``.  The manifest is written first with
``"status": "running"`` and rewritten with ``"complete"`` only after every other file is in
place, so a partial folder can never be mistaken for a finished one.  Samplers checkpoint
their counts atomically under ``checkpoints/``; rerunning the same config into the same
folder resumes, and because every chunk / run has its own key the resumed counts equal those
of an uninterrupted run.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from .progress import progress as tqdm  # a bar on a terminal, plain lines in a log

from . import __version__
from .analysis import agreement
from .checkpoint import atomic_write_json, atomic_write_with, load_npz, save_npz
from .config import Config
from .counting import FunctionCounter
from .function_table import concat, counter_frame, counter_frames
from .models import build_model
from .samplers._common import EvalLayout, stream_key
from .samplers._rejection import (RejectionResult, make_chunk_fn, run_rejection_chunks,
                                  rejection_chunk_size)
from .samplers._sgd import SGDResult, SGDSettings, SGDTrainer
from .tasks import build_task

CHECKPOINT_SECONDS = 15.0  # default; BAYES_SGD_CHECKPOINT_SECONDS overrides it
EPOCHS_PER_SYNC = 0  # SGD epochs between host syncs: 0 = adapted to the runs (sync_epochs_for)
PRIOR_MIN_COUNT_IN_MEMORY = 2  # prior functions kept in the in-memory table (all are written)
CPU_MAX_SLOTS = 32  # automatic SGD slots per CPU device: more leave the core's cache (slower)


def checkpoint_seconds() -> float:
    """Seconds between checkpoints: ``$BAYES_SGD_CHECKPOINT_SECONDS`` if set (> 0), else 15."""
    text = os.environ.get("BAYES_SGD_CHECKPOINT_SECONDS", "").strip()
    if not text:
        return CHECKPOINT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"BAYES_SGD_CHECKPOINT_SECONDS: expected a number of seconds > 0, "
                         f"got {text!r}")
    return value


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the latest checkpoint has been saved."""


class ResultsFolderError(RuntimeError):
    pass


# ---- results folder --------------------------------------------------------------------------

def prepare_results_folder(out: Path, cfg: Config) -> None:
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
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            raise ResultsFolderError(f"--out {out}: manifest.json is corrupt; use a new folder") from None
        if old.get("config") != json.loads(json.dumps(cfg.to_dict())):
            raise ResultsFolderError(
                f"--out {out}: the folder holds a run of a different config; choose another "
                "--out (rerunning the same config into a folder resumes it)")


def _versions() -> dict:
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


class _Signals:
    """SIGINT/SIGTERM state: raised at once, or held while bookkeeping is half-updated."""

    holding = 0  # > 0 inside _critical(): a signal is recorded, raised when it ends
    pending: str | None = None
    unsafe = False  # raised by the fallback timer while held (state may be half-updated)


@contextmanager
def _interrupts_raise():
    """Turn SIGTERM (and SIGINT) into ``Interrupted`` so samplers save a checkpoint first.

    While bookkeeping is held (``_critical``) the signal is recorded and raised at the end of
    the critical section, so a checkpoint never holds counts of chunks or runs it does not
    list as done (or the reverse).  A signal held for more than ``HOLD_SECONDS`` is raised
    anyway, marked unsafe: the sampler then keeps its last periodic checkpoint."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        if _Signals.holding:
            _Signals.pending = _Signals.pending or name
            try:
                signal.signal(signal.SIGALRM, alarm)
                signal.setitimer(signal.ITIMER_REAL, HOLD_SECONDS)
            except (ValueError, OSError):
                pass
            return
        raise Interrupted(name)

    def alarm(signum, frame):
        if _Signals.pending:
            _Signals.unsafe = True
            raise Interrupted(_Signals.pending)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        old_alarm = signal.getsignal(signal.SIGALRM)
    except ValueError:
        old_alarm = None
    _Signals.pending, _Signals.unsafe, _Signals.holding = None, False, 0
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if old and old_alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
        _Signals.pending, _Signals.unsafe, _Signals.holding = None, False, 0


HOLD_SECONDS = 5.0


@contextmanager
def _critical(*, raise_pending: bool = True):
    """Hold SIGINT/SIGTERM for the duration (bookkeeping that must not be cut in half); a held
    signal is raised at the end, or dropped with ``raise_pending=False`` (the work it would
    interrupt is finished by then)."""
    _Signals.holding += 1
    try:
        yield
    finally:
        _Signals.holding -= 1
    if raise_pending:
        _raise_pending()
    elif not _Signals.holding:
        _Signals.pending = None


def _raise_pending() -> None:
    if _Signals.pending and not _Signals.holding:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        except (ValueError, OSError):
            pass
        raise Interrupted(_Signals.pending)


# ---- samplers ---------------------------------------------------------------------------------

def _rejection(cfg: Config, task, model, out: Path, *, show: bool, scheduler=None) -> RejectionResult:
    rc = cfg.samplers.rejection
    layout = EvalLayout.for_task(task)
    ck_path = out / "checkpoints" / "rejection.npz"
    ck = load_npz(ck_path)
    # The automatic chunk size depends on the memory available when the run starts; a resumed
    # run keeps the chunk size of its checkpoint (chunks are the unit of the random streams).
    k = rc.output_draws
    chunk = rc.chunk_size or (int(ck["chunk_size"]) if ck is not None
                              else rejection_chunk_size(model, len(layout.x), k))
    n_chunks = math.ceil(rc.n_samples / chunk)
    n_table = len(layout.x) if (rc.record_prior and layout.table_idx is not None) else None
    res = RejectionResult(FunctionCounter(task.n_test),
                          FunctionCounter(n_table) if n_table else None, chunk_size=chunk,
                          output_draws=k)
    if (ck is not None and int(ck["chunk_size"]) == chunk
            and int(ck.get("output_draws", 1)) == k):
        res.posterior = FunctionCounter.from_state(
            {"keys": ck["post_keys"], "counts": ck["post_counts"], "n_bits": task.n_test})
        if n_table:
            res.prior = FunctionCounter.from_state(
                {"keys": ck["prior_keys"], "counts": ck["prior_counts"], "n_bits": n_table})
        res.chunks_done = set(np.flatnonzero(ck["done"]).tolist())
        res.n_samples, res.n_accepted = int(ck["n_samples"]), int(ck["n_accepted"])
        # checkpoints before the group statistics: independent draws, one network a group
        res.n_groups = int(ck.get("n_groups", res.n_samples))
        res.sum_accepted_sq = int(ck.get("sum_accepted_sq", res.n_accepted))

    def save():
        with _critical():
            done = np.zeros(n_chunks, bool)
            done[list(res.chunks_done)] = True
            pk, pc = res.posterior.table()
            arrays = dict(chunk_size=chunk, done=done, n_samples=res.n_samples,
                          n_accepted=res.n_accepted, post_keys=pk, post_counts=pc,
                          output_draws=k, n_groups=res.n_groups,
                          sum_accepted_sq=res.sum_accepted_sq)
            if res.prior is not None:
                arrays["prior_keys"], arrays["prior_counts"] = res.prior.table()
            save_npz(ck_path, **arrays)

    todo = [c for c in range(n_chunks) if c not in res.chunks_done]
    stream = stream_key(cfg.seed, "rejection")
    kw = dict(chunk_size=chunk, n_samples=rc.n_samples, n_test=task.n_test, n_table=n_table)
    bar = tqdm(total=rc.n_samples, initial=res.n_samples, desc="rejection", unit="net",
               unit_scale=True, disable=not show, dynamic_ncols=True)
    last = [time.monotonic()]
    every = checkpoint_seconds()

    def merge(part: RejectionResult) -> None:
        with _critical():  # counts and the list of done chunks change together
            res.merge(part)
        bar.update(part.n_samples)
        bar.set_postfix(accepted=res.n_accepted,
                        rate=f"{res.n_accepted / max(res.n_samples, 1):.1e}")
        if time.monotonic() - last[0] > every:
            save()
            last[0] = time.monotonic()

    try:
        if scheduler is not None and todo:
            from .distributed import run_rejection_distributed
            run_rejection_distributed(scheduler, cfg, todo, show=False, chunk_size=chunk,
                                      on_part=merge)
        elif todo:
            fn = make_chunk_fn(model, layout, task.y_train, chunk, n_table is not None,
                               output_draws=k)
            devices = jax.devices()  # chunk c on devices[c % len]: results do not depend on it
            for i in range(0, len(todo), 8):
                merge(run_rejection_chunks(fn, stream, todo[i:i + 8], devices=devices, **kw))
    finally:
        save()  # res is consistent: merges are never cut in half
        bar.close()
    return res


def sgd_trainer_and_run_kwargs(cfg: Config, task, model, *, slots: int | None = None):
    """The runner's ``SGDTrainer`` and ``run`` keyword arguments for ``cfg`` (also used by the
    benchmark and the distributed workers).  Every JAX device trains ``P`` slots concurrently
    (on CPU one device per core, see ``bayes_sgd._cpu_devices``).  An automatic slot count
    (``slots = 0``) shares ``n_runs`` and the memory budget between the devices and is capped
    at ``CPU_MAX_SLOTS`` per device on CPU, where larger vmapped batches fall out of the core's
    cache and train fewer runs per second; ``EPOCHS_PER_SYNC`` epochs between host syncs.
    Results do not depend on any of these (every run's random numbers depend on its run id
    alone)."""
    settings = SGDSettings.from_config(cfg.samplers.sgd)
    devices = jax.devices()
    n_dev = len(devices)
    if slots:
        settings.slots = slots
    else:
        settings.memory_budget_bytes //= n_dev
    trainer = SGDTrainer(model, task, settings, stream=stream_key(cfg.seed, "sgd"))
    if not settings.slots:
        trainer.P = max(1, min(trainer.P, -(-settings.n_runs // n_dev)))
        if jax.default_backend() == "cpu":
            trainer.P = min(trainer.P, CPU_MAX_SLOTS)
    return trainer, dict(epochs_per_sync=EPOCHS_PER_SYNC,
                         devices=devices if n_dev > 1 else None)


def _sgd(cfg: Config, task, model, out: Path, *, show: bool, scheduler=None) -> SGDResult:
    sc = cfg.samplers.sgd
    ck_path = out / "checkpoints" / "sgd.npz"
    done = SGDResult(FunctionCounter(task.n_test))
    ck = load_npz(ck_path)
    if ck is not None:
        done.counter = FunctionCounter.from_state(
            {"keys": ck["keys"], "counts": ck["counts"], "n_bits": task.n_test})
        done.records = {int(r): (bool(f), int(fe), int(ep), bool(d)) for r, f, fe, ep, d in
                        zip(ck["run_id"], ck["fitted"], ck["fit_epoch"], ck["epochs"], ck["diverged"])}

    def save(part: SGDResult | None = None):
        with _critical():
            recs = dict(done.records)
            counter = FunctionCounter(task.n_test)
            counter.merge(done.counter)
            if part is not None:
                recs.update(part.records)
                counter.merge(part.counter)
            keys, counts = counter.table()
            arr = np.array([(r, *v) for r, v in sorted(recs.items())], dtype=np.int64).reshape(-1, 5)
            save_npz(ck_path, keys=keys, counts=counts, run_id=arr[:, 0], fitted=arr[:, 1],
                     fit_epoch=arr[:, 2], epochs=arr[:, 3], diverged=arr[:, 4])

    todo = [r for r in range(sc.n_runs) if r not in done.records]
    bar = tqdm(total=sc.n_runs, initial=len(done.records), desc="sgd", unit="run",
               disable=not show, dynamic_ncols=True)
    fitted = [done.n_fitted]
    last = [time.monotonic()]
    every = checkpoint_seconds()
    # the latest consistent state of this session's runs (trainer.run updates its result
    # between syncs, so a signal is held until the next sync; see _interrupts_raise)
    latest: list = [None]

    def progress(n_done, n_fit):
        fitted[0] += n_fit
        bar.update(n_done)
        bar.set_postfix(fitted=fitted[0])

    saved_runs = [0]  # this session's runs in the last checkpoint

    def on_sync(part):  # every sync (also without finished runs: signals are seen sooner)
        latest[0] = part
        if time.monotonic() - last[0] > every and len(part.records) > saved_runs[0]:
            save(part)
            last[0], saved_runs[0] = time.monotonic(), len(part.records)
        if _Signals.pending:  # at a sync the result is consistent: save it, then stop
            save(part)
            raise Interrupted(_Signals.pending)

    part = SGDResult(FunctionCounter(task.n_test))
    safe = True
    try:
        if scheduler is not None and todo:
            from .distributed import run_sgd_distributed
            trainer, _ = sgd_trainer_and_run_kwargs(cfg, task, model)

            def on_block(block: SGDResult) -> None:
                with _critical():
                    part.merge(block)
                progress(len(block.records), block.n_fitted)
                latest[0] = part
                if time.monotonic() - last[0] > every:
                    save(part)
                    last[0] = time.monotonic()

            run_sgd_distributed(scheduler, cfg, todo, slots=trainer.P, on_part=on_block)
        elif todo:
            trainer, run_kw = sgd_trainer_and_run_kwargs(cfg, task, model)
            _Signals.holding += 1  # trainer.run: signals wait for the next sync (or 5 s)
            try:
                # (JAX's default threefry lowering: the unrolled one, fused into
                # epoch_permutation's m x m comparison, made epochs 7x slower)
                part = trainer.run(todo, progress=progress, on_sync=on_sync, **run_kw)
            except Interrupted:
                safe = not _Signals.unsafe
                raise
            finally:
                _Signals.holding -= 1
            latest[0] = part
    finally:
        bar.close()
        if safe:
            save(latest[0])
        # else: a signal cut trainer.run between syncs; the last periodic checkpoint stands
    _raise_pending()
    done.merge(part)
    return done


def _runs_frame(res: SGDResult) -> pd.DataFrame:
    rows = sorted(res.records.items())
    return pd.DataFrame({
        "run_id": [r for r, _ in rows],
        "fitted": [v[0] for _, v in rows],
        "epochs_to_fit": pd.array([v[1] if v[0] else None for _, v in rows], dtype="Int64"),
        "epochs_trained": [v[2] for _, v in rows],
        "diverged": [v[3] for _, v in rows],
    })


# ---- the whole experiment -----------------------------------------------------------------------

def run_experiment(cfg: Config, out: str | Path, *, show_progress: bool = True,
                   scheduler: str | None = None) -> dict:
    """Run every enabled sampler, write the results folder, return the summary."""
    out = Path(out)
    task = build_task(cfg.task)  # bad task input fails before the folder is touched
    model = build_model(cfg.model, task.input_shape)
    prepare_results_folder(out, cfg)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = {
        "status": "running", "config": cfg.to_dict(),
        "seeds": {"master": cfg.seed, "task_split": cfg.task.train_seed,
                  "streams": "jax.random.fold_in(key(seed), sampler id) then fold_in(chunk or run index)"},
        "versions": _versions(), "git_commit": _git_commit(), "platform": platform.platform(),
        "jax_devices": [str(d) for d in jax.devices()], "command": sys.argv, "started": started,
    }
    old = out / "manifest.json"
    if old.exists():
        manifest["started"] = json.loads(old.read_text()).get("started", started)
        manifest["resumed"] = started
    atomic_write_json(old, manifest)
    for stale in ("summary.json", "functions.parquet", "runs.parquet", "scatter.png"):
        (out / stale).unlink(missing_ok=True)

    frames, summary, timings = [], {}, {}
    runs = prior = None
    with _interrupts_raise():
        try:
            if cfg.samplers.rejection.enabled:
                t0 = time.perf_counter()
                rej = _rejection(cfg, task, model, out, show=show_progress, scheduler=scheduler)
                timings["rejection_s"] = time.perf_counter() - t0
                frames.append(counter_frame("rejection", rej.posterior, task))
                if rej.prior is not None:
                    # The prior's table can hold millions of functions (10^8 draws): it goes to
                    # functions.parquet in batches; the frame in memory keeps the functions seen
                    # samplers.gp.prior_min_count times or more (>= 2), all the analysis uses.
                    prior = rej.prior
                    frames.append(counter_frame(
                        "prior", prior, task, full_table=True,
                        min_count=max(PRIOR_MIN_COUNT_IN_MEMORY, cfg.samplers.gp.prior_min_count)))
                summary["rejection"] = {
                    "n_samples": rej.n_samples, "n_accepted": rej.n_accepted,
                    "acceptance_rate": rej.n_accepted / max(rej.n_samples, 1),
                    "log10_P_S_sampled": math.log10(rej.n_accepted / rej.n_samples) if rej.n_accepted else None,
                    "n_functions": len(rej.posterior), "chunk_size": rej.chunk_size,
                    "samples_per_s": rej.n_samples / timings["rejection_s"],
                    "output_draws": rej.output_draws,
                    "ess": rej.effective_sample_sizes()}
            if cfg.samplers.sgd.enabled:
                t0 = time.perf_counter()
                sgd = _sgd(cfg, task, model, out, show=show_progress, scheduler=scheduler)
                timings["sgd_s"] = time.perf_counter() - t0
                frames.append(counter_frame("sgd", sgd.counter, task))
                runs = _runs_frame(sgd)
                fit = runs["fitted"].to_numpy()
                summary["sgd"] = {
                    "n_runs": len(runs), "n_fitted": int(fit.sum()),
                    "n_not_fitted": int((~fit & ~runs["diverged"].to_numpy()).sum()),
                    "n_diverged": int(runs["diverged"].sum()),
                    "n_functions": len(sgd.counter),
                    "epochs_to_fit_median": float(runs.loc[fit, "epochs_to_fit"].median()) if fit.any() else None,
                    "epochs_to_fit_mean": float(runs.loc[fit, "epochs_to_fit"].astype(float).mean()) if fit.any() else None,
                    "runs_per_s": len(runs) / timings["sgd_s"]}
            if cfg.samplers.nuts.enabled:
                from .samplers._nuts_runner import run_nuts
                t0 = time.perf_counter()
                frame, diag = run_nuts(cfg, task, model)
                timings["nuts_s"] = time.perf_counter() - t0
                frames.append(frame)
                summary["nuts"] = diag
            df = concat(frames)
            if cfg.samplers.gp.enabled:
                from .samplers._gp import run_gp
                t0 = time.perf_counter()
                gp_frame, gp_summary = run_gp(cfg, task, model, df, show=show_progress)
                timings["gp_s"] = time.perf_counter() - t0
                df = concat([df, gp_frame])
                summary["gp"] = gp_summary
                if prior is not None and "prior_vs_sampling" in gp_summary:
                    # the frame holds the repeated prior functions only; the counter has them all
                    gp_summary["prior_vs_sampling"]["n_distinct_sampled"] = len(prior)
            summary = _summarise(cfg, task, df, summary, timings, runs)
            fig = None
            if cfg.analysis.plot:
                from .plotting import scatter_panels

                fig = scatter_panels(df, title=task.name)
        except Interrupted as e:
            raise Interrupted(f"{e}: checkpoint saved in {out / 'checkpoints'}; rerun the same "
                              "command to resume") from None
        # Everything is computed: a signal now waits until the results are written (a second
        # or two), so the folder ends complete rather than half-written.
        with _critical(raise_pending=False):
            _write_functions(out / "functions.parquet", df, prior, task)
            if runs is not None:
                _write_table(out / "runs.parquet", runs)
            atomic_write_json(out / "summary.json", summary)
            if fig is not None:
                import matplotlib.pyplot as plt

                tmp = out / ".scatter.png.tmp"
                fig.savefig(tmp, dpi=120, format="png")
                plt.close(fig)
                os.replace(tmp, out / "scatter.png")
            manifest.update(status="complete",
                            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            totals={k: {kk: vv for kk, vv in v.items() if isinstance(vv, (int, float))}
                                    for k, v in summary.items() if k in ("rejection", "sgd", "nuts")})
            atomic_write_json(out / "manifest.json", manifest)
    return summary


def _summarise(cfg: Config, task, df: pd.DataFrame, summary: dict, timings: dict, runs) -> dict:
    """summary.json: the task, each sampler's totals, the agreement analysis, timings."""
    target = task.target_function
    summary = {
        "task": {"name": task.name, "m": task.m, "n_test": task.n_test, "target_on_E": target,
                 **{k: v for k, v in task.meta.items() if isinstance(v, (int, float, str))}},
        **summary,
        "agreement": agreement(df, min_counts=cfg.analysis.min_counts, target=target),
        "timings_s": timings,
    }
    if "gp" in summary and runs is not None and summary["gp"].get("pac_bayes_bound") is not None:
        sgd_rows = df[df["sampler"] == "sgd"]
        summary["gp"]["sgd_mean_test_error"] = float(
            (sgd_rows["test_error"] * sgd_rows["count"].astype(float)).sum() / sgd_rows["count"].astype(float).sum())
    return summary


def _write_functions(path: Path, df: pd.DataFrame, prior, task) -> None:
    """functions.parquet: ``df``'s rows, with the prior's rows (if counted) replaced by the
    whole prior table streamed in batches, so memory stays bounded however many there are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if prior is None:
        return _write_table(path, df)
    # a generator: one batch of the prior's table in memory at a time
    frames = itertools.chain([df[df["sampler"] != "prior"]],
                             counter_frames("prior", prior, task, full_table=True))
    schema = None

    def write(f):
        nonlocal schema
        writer = None
        try:
            for frame in frames:
                if not len(frame):
                    continue
                t = pa.Table.from_pandas(concat([frame]), preserve_index=False)  # Int64 counts
                if writer is None:
                    schema = t.schema
                    writer = pq.ParquetWriter(f, schema)
                writer.write_table(t.cast(schema))
            if writer is None:
                writer = pq.ParquetWriter(f, pa.Table.from_pandas(df, preserve_index=False).schema)
        finally:
            if writer is not None:
                writer.close()

    atomic_write_with(path, write)


def _write_table(path: Path, df: pd.DataFrame) -> None:
    atomic_write_with(path, lambda f: df.to_parquet(f, index=False))
