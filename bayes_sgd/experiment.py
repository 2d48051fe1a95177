"""Run an experiment end to end: task -> model -> samplers -> function table -> analysis -> files.

``run_experiment`` builds the task and model, takes the results folder (``results_folder``:
lock, manifest, checkpoints), resumes every enabled sampler from its checkpoint (all validated
before the manifest goes back to "running"), runs the counting samplers and then the scorers
(``bayes_sgd.samplers``: one ``Sampler`` each), and writes the function table, the analysis and
the figure.  Because every chunk / run has its own key, a resumed run gives the counts of an
uninterrupted one.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import pandas as pd

from .analysis import agreement
from .checkpoint import atomic_write_with
from .config import Config
from .function_table import concat, counter_frames
from .interrupts import Interrupted, Interrupts
from .models import build_model
from .results_folder import (ResultsFolder, ResultsFolderError, checkpoint_seconds, folder_lock,
                             prepare_results_folder)
from .samplers import (RunContext, SamplerOutput, SGDTrainer, enabled_samplers,
                       sgd_trainer_and_run_kwargs)
from .tasks import build_task

__all__ = ["Interrupted", "ResultsFolderError", "checkpoint_seconds", "prepare_results_folder",
           "run_experiment", "run_shared_rejection", "sgd_trainer_and_run_kwargs"]

_ = SGDTrainer  # re-exported: tests patch SGDTrainer.run through this module


def run_experiment(cfg: Config, out: str | Path, *, show_progress: bool = True,
                   scheduler: str | None = None, restart: bool = False) -> dict:
    """Run every enabled sampler, write the results folder, return the summary.

    ``restart`` discards the checkpoints first (finished results stay until replaced)."""
    out = Path(out)
    task = build_task(cfg.task)  # bad task input fails before the folder is touched
    model = build_model(cfg.model, task.input_shape)
    prepare_results_folder(out, cfg)
    folder = ResultsFolder(out, cfg)
    with folder_lock(out):
        if restart:
            folder.discard_checkpoints()
        ctx = RunContext(cfg, task, model, out, Interrupts(), show=show_progress,
                         scheduler=scheduler)
        samplers = enabled_samplers(cfg)
        states = {s.name: s.load(ctx) for s in samplers}  # damaged checkpoints: before any change
        import jax

        folder.begin([str(d) for d in jax.devices()])
        with ctx.interrupts:
            try:
                df, summary, fig = _run_samplers(ctx, samplers, states)
            except Interrupted as e:
                raise Interrupted(f"{e}: {_checkpoint_note(ctx)}") from None
            # Everything is computed: a signal now waits until the results are written (a
            # second or two), so the folder ends complete rather than half-written.
            with ctx.interrupts.critical(raise_pending=False):
                _write_results(folder, ctx, df, summary, fig)
    return summary


def run_shared_rejection(cfgs: dict[str, Config], outs: dict[str, Path], *,
                         show_progress: bool = True) -> list[list[str]]:
    """The rejection sampling of several runs in one pass over the prior where their configs
    differ only in the target and S (``RejectionSampler.share_key``): each run's folder gets
    the rejection checkpoint its own ``run_experiment`` would have written, every chunk done,
    and ``run_experiment`` then resumes from it (the other samplers, the analysis and the
    result files as always).  Runs whose checkpoint holds chunks of another size, and runs
    whose rejection is done, keep their own path.  Interrupted: every run's checkpoint holds
    what was counted, and rerunning resumes.  Returns the groups (run names) that shared a
    pass.  The folders are prepared, locked and their manifests set running as by
    ``run_experiment``."""
    from contextlib import ExitStack

    from .samplers import REGISTRY, RejectionResult

    sampler = REGISTRY["rejection"]
    groups: dict[str, list[str]] = {}
    for name, cfg in cfgs.items():
        key = sampler.share_key(cfg)
        if key is not None:
            groups.setdefault(key, []).append(name)
    shared = []
    for names in (g for g in groups.values() if len(g) > 1):
        tasks = {n: build_task(cfgs[n].task) for n in names}
        model = build_model(cfgs[names[0]].model, tasks[names[0]].input_shape)
        interrupts = Interrupts()
        with ExitStack() as stack:
            ctxs, states = {}, {}
            for n in names:
                prepare_results_folder(outs[n], cfgs[n])
                stack.enter_context(folder_lock(outs[n]))
                ctxs[n] = RunContext(cfgs[n], tasks[n], model, Path(outs[n]), interrupts,
                                     show=show_progress)
                states[n] = sampler.load(ctxs[n])
            # one chunk size (chunks are the unit of the random streams): a checkpoint's if one
            # holds chunks, else the first run's; a fresh state of the automatic size follows it
            held = [st.chunk_size for st in states.values() if st.chunks_done]
            chunk = held[0] if held else states[names[0]].chunk_size
            for n in names:
                st, rc = states[n], cfgs[n].samplers.rejection
                if not st.chunks_done and st.chunk_size != chunk and not rc.chunk_size:
                    states[n] = RejectionResult(st.posterior, st.prior, chunk_size=chunk,
                                                output_draws=st.output_draws)
            n_chunks = -(-cfgs[names[0]].samplers.rejection.n_samples // chunk)
            todo = [n for n in names if states[n].chunk_size == chunk
                    and len(states[n].chunks_done) < n_chunks]
            if len(todo) < 2:
                continue
            import jax

            devices = [str(d) for d in jax.devices()]
            for n in todo:
                ResultsFolder(outs[n], cfgs[n]).begin(devices)
            with interrupts:
                try:
                    sampler.run_shared([ctxs[n] for n in todo], [states[n] for n in todo])
                except Interrupted as e:
                    raise Interrupted(f"{e}: {_checkpoint_note(ctxs[todo[0]])} (and in the "
                                      f"folders of {', '.join(todo[1:])})") from None
            shared.append(todo)
    return shared


def _checkpoint_note(ctx: RunContext) -> str:
    where = ctx.out / "checkpoints"
    if ctx.saved:
        return f"checkpoint saved in {where}; rerun the same command to resume"
    if any(where.glob("*.npz")):
        return f"no new checkpoint; the earlier one in {where} is kept; rerun the same command to resume"
    return "no checkpoint was written (nothing had finished); rerun the same command to start again"


def _run_samplers(ctx: RunContext, samplers, states) -> tuple[pd.DataFrame, dict, object]:
    """The counting samplers, then the function table, the scorers, the analysis, the figure."""
    summary, timings, frames = {}, {}, []
    for s in samplers:
        if not s.counts and ctx.frame is None:
            ctx.frame = concat(frames)
        t0 = time.perf_counter()
        res = s.run(ctx, states[s.name])
        timings[f"{s.name}_s"] = time.perf_counter() - t0
        ctx.outputs[s.name], summary[s.name] = res, res.summary
        if s.counts:
            frames.extend(res.frames)
        else:
            ctx.frame = concat([ctx.frame, *res.frames])
    df = ctx.frame if ctx.frame is not None else concat(frames)
    summary = _summarise(ctx, df, summary, timings)
    fig = None
    if ctx.cfg.analysis.plot:
        from .plotting import scatter_panels

        fig = scatter_panels(df, title=scatter_title(ctx.cfg.name, ctx.task.name))
    return df, summary, fig


def scatter_title(config_name: str, task_name: str) -> str:
    """The scatter's title: the config's name, and the task's where it adds something (a
    truth-table target's task is only "..._custom")."""
    if task_name == config_name or task_name.endswith("_custom"):
        return config_name
    return f"{config_name} ({task_name})"


def _summarise(ctx: RunContext, df: pd.DataFrame, summary: dict, timings: dict) -> dict:
    """summary.json: the task, each sampler's section, the agreement analysis, timings."""
    task, target = ctx.task, ctx.task.target_function
    return {
        "task": {"name": task.name, "m": task.m, "n_test": task.n_test, "target_on_E": target,
                 **{k: v for k, v in task.meta.items() if isinstance(v, (int, float, str))}},
        **summary,
        "agreement": agreement(df, min_counts=ctx.cfg.analysis.min_counts, target=target),
        "timings_s": timings,
    }


def _write_results(folder: ResultsFolder, ctx: RunContext, df: pd.DataFrame, summary: dict,
                   fig) -> None:
    """Every result file atomically, then the manifest "complete"; files of an earlier run that
    this one does not produce are removed only now."""
    outputs: dict[str, SamplerOutput] = ctx.outputs
    full = {k: v for o in outputs.values() for k, v in o.full_tables.items()}
    _write_functions(folder.out / "functions.parquet", df, full, ctx.task)
    written = {"functions.parquet", "summary.json"}
    for o in outputs.values():
        for name, table in o.tables.items():
            folder.write_table(name, table)
            written.add(name)
    folder.write_json("summary.json", summary)
    if fig is not None:
        folder.write_figure("scatter.png", fig)
        written.add("scatter.png")
    folder.remove_stale(written)
    folder.complete({n: {k: v for k, v in summary[n].items() if isinstance(v, (int, float))}
                     for n, o in outputs.items() if ctx.cfg.samplers.sections()[n].counts})


def _write_functions(path: Path, df: pd.DataFrame, full: dict, task) -> None:
    """functions.parquet: ``df``'s rows, with the rows of a sampler in ``full`` (the prior, if
    counted) replaced by its whole table streamed in batches, so memory stays bounded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not full:
        return atomic_write_with(path, lambda f: df.to_parquet(f, index=False))
    # a generator: one batch of a whole table in memory at a time
    frames = itertools.chain([df[~df["sampler"].isin(list(full))]],
                             *(counter_frames(name, c, task, full_table=True)
                               for name, c in full.items()))

    def write(f):
        writer = schema = None
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
