"""Read finished results folders back: one folder, or several joined for a grid of figures.

A results folder (written by ``bayes_sgd.experiment.run_experiment``) is complete when its
``manifest.json`` says ``"status": "complete"``; the manifest is rewritten with that status only
after every other file is in place.  ``load`` refuses anything else, naming what is missing.

>>> from bayes_sgd import results
>>> r = results.load("results/boolean_n7")
>>> r.functions                      # tidy table: one row per (sampler, function)
>>> results.wide(r)                  # one column of log10 p per sampler
>>> df = results.join(["results/batch_n7/batch1", "results/batch_n7/batch8"],
...                   reference="results/batch_n7/bayes")   # adds a ``run`` column

This module does not import JAX: notebooks that only read results stay light.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .analysis import POSTERIOR_SAMPLERS
from .results_folder import why_incomplete

__all__ = ["IncompleteResultsError", "Results", "load", "wide", "join", "join_runs",
           "CONFIG_COLUMNS"]

# Config fields copied into joined tables as columns, so a grid can use them as rows/columns.
CONFIG_COLUMNS = {
    "target": ("task", "target"), "train_size": ("task", "train_size"), "n": ("task", "n"),
    "dataset": ("task", "dataset"), "arch": ("model", "arch"),
    "optimizer": ("samplers", "sgd", "optimizer"), "lr": ("samplers", "sgd", "lr"),
    "batch_size": ("samplers", "sgd", "batch_size"), "loss": ("samplers", "sgd", "loss"),
    "epochs_after_fit": ("samplers", "sgd", "epochs_after_fit"),
}


class IncompleteResultsError(RuntimeError):
    """The folder is not a finished results folder (no manifest, still running, files missing)."""


@dataclass
class Results:
    """A finished results folder."""

    path: Path
    functions: pd.DataFrame
    runs: pd.DataFrame | None
    summary: dict
    manifest: dict
    _label: str | None = field(default=None, repr=False)

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def name(self) -> str:
        """The config's ``name`` (falls back to the folder name)."""
        return self.config.get("name") or self.path.name

    @property
    def samplers(self) -> list[str]:
        return list(dict.fromkeys(self.functions["sampler"]))

    def wide(self, value: str = "log10_p") -> pd.DataFrame:
        return wide(self, value)

    def __repr__(self) -> str:
        counts = self.functions["sampler"].value_counts().to_dict()
        return f"Results({str(self.path)!r}, name={self.name!r}, functions per sampler={counts})"


def _read_json(path: Path, folder: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IncompleteResultsError(f"{folder}: {path.name} is not valid JSON ({e})") from None


def load(folder: str | Path) -> Results:
    """Load a complete results folder; raise ``IncompleteResultsError`` saying what is wrong."""
    folder = Path(folder)
    manifest, why = why_incomplete(folder)
    if why is not None:
        raise IncompleteResultsError(f"{folder}: {why}")
    functions = pd.read_parquet(folder / "functions.parquet")
    runs = pd.read_parquet(folder / "runs.parquet") if (folder / "runs.parquet").exists() else None
    summary = _read_json(folder / "summary.json", folder)
    return Results(folder, functions, runs, summary, manifest)


def _frame(obj) -> pd.DataFrame:
    if isinstance(obj, Results):
        return obj.functions
    if isinstance(obj, (str, Path)):
        return load(obj).functions
    if isinstance(obj, pd.DataFrame):
        return obj
    raise TypeError(f"expected a DataFrame, Results or a results folder, got {type(obj).__name__}")


def wide(df_or_results, value: str = "log10_p", samplers: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per function, one column per sampler holding ``value`` (default log10 p).

    Only the posterior samplers (rejection, sgd, nuts, gp) by default: the ``prior`` rows are
    functions on all 2^n inputs, not on E, and do not share an index with them.  A joined table
    (with a ``run`` column) gets one column per (run, sampler).
    """
    df = _frame(df_or_results)
    samplers = list(samplers) if samplers is not None else list(POSTERIOR_SAMPLERS)
    sub = df[df["sampler"].isin(samplers)]
    columns = ["run", "sampler"] if "run" in sub.columns else "sampler"
    out = sub.pivot_table(index="function", columns=columns, values=value, aggfunc="first",
                          observed=True)
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = out.columns.remove_unused_levels()
    return out


def _as_results(obj) -> Results:
    if isinstance(obj, Results):
        return obj
    return load(obj)


def _labels(items: list[Results], labels: Iterable[str] | None) -> list[str]:
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(items):
            raise ValueError(f"join: {len(items)} folders but {len(labels)} labels")
    else:
        labels = [r.name for r in items]
        if len(set(labels)) < len(labels):  # same config name: use the folder names
            labels = [r.path.name for r in items]
    if len(set(labels)) < len(labels):
        raise ValueError(f"join: run labels must be unique, got {labels}; pass labels=[...]")
    return labels


def _same_task(a: Results, b: Results) -> bool:
    ta, tb = a.summary.get("task", {}), b.summary.get("task", {})
    keys = ("target_on_E", "target_table", "train_mask", "n_test")
    return (a.config.get("task") == b.config.get("task")
            and a.config.get("model") == b.config.get("model")
            and all(ta.get(k) == tb.get(k) for k in keys))


def join(folders, labels: Iterable[str] | None = None, *, reference=None) -> pd.DataFrame:
    """Concatenate the function tables of several runs, with a ``run`` column first.

    ``folders``: results folders or ``Results``.  ``labels``: one per folder; by default each
    run's config name (the folder names if config names repeat).  Config fields listed in
    ``CONFIG_COLUMNS`` (optimizer, batch_size, lr, target, ...) become columns, so
    ``plotting.grid(df, row="optimizer", col="batch_size")`` can lay runs out.

    ``reference``: a results folder (e.g. a rejection-only run) whose samplers are added to every
    run that lacks them, so SGD-only runs of one task share one expensive P_B estimate.  Its
    task and model must be those of each run (checked), else ``ValueError``.
    """
    if isinstance(folders, (str, Path, Results)):
        folders = [folders]
    items = [_as_results(f) for f in folders]
    if not items:
        raise ValueError("join: expected at least one results folder")
    names = _labels(items, labels)
    ref = _as_results(reference) if reference is not None else None
    frames = []
    for label, r in zip(names, items):
        df = r.functions
        if ref is not None and ref.path.resolve() != r.path.resolve():
            if not _same_task(ref, r):
                raise ValueError(
                    f"join: reference {ref.path} has a different task or model than {r.path}")
            extra = ref.functions[~ref.functions["sampler"].isin(set(df["sampler"]))]
            df = pd.concat([df, extra], ignore_index=True) if len(extra) else df
        df = df.copy()
        df.insert(0, "run", label)
        for col, keys in CONFIG_COLUMNS.items():
            node = r.config
            for k in keys:
                node = node.get(k, {}) if isinstance(node, dict) else {}
            df[col] = node if not isinstance(node, dict) else None
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["run"] = pd.Categorical(out["run"], categories=names)
    for col in ("count", "count_half0", "count_half1"):
        if col in out:
            out[col] = out[col].astype("Int64")
    return out


def join_runs(folders, labels: Iterable[str] | None = None) -> pd.DataFrame:
    """Concatenate the SGD ``runs.parquet`` tables (epochs to fit, ...) with a ``run`` column."""
    if isinstance(folders, (str, Path, Results)):
        folders = [folders]
    items = [_as_results(f) for f in folders]
    names = _labels(items, labels)
    frames = []
    for label, r in zip(names, items):
        if r.runs is None:
            continue
        df = r.runs.copy()
        df.insert(0, "run", label)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run", "run_id", "fitted", "epochs_to_fit",
                                     "epochs_trained", "diverged"])
    out = pd.concat(frames, ignore_index=True)
    out["run"] = pd.Categorical(out["run"], categories=[n for n in names if n in set(out["run"])])
    return out
