"""Every analysis/*.py notebook (jupytext percent format) runs on a small real results folder
and draws at least one figure."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "analysis").glob("*.py"))
# A small real results folder (n = 5, widths [8], prior recorded), built once per test session
# and shared by test_results, test_notebooks and test_reproduce, also across xdist workers
# (the same helper is in each file; the folder is keyed by the hash of its config).
TINY = ["name=tiny", "task.n=5", "task.target=and3", "task.train_size=8", "model.widths=[8]",
        "samplers.rejection.n_samples=20000", "samplers.rejection.record_prior=true",
        "samplers.sgd.n_runs=60", "samplers.sgd.max_epochs=200", "analysis.plot=false"]


def shared_tiny_results(tmp_path_factory, overrides=TINY) -> Path:
    import hashlib
    import os
    import time

    from bayes_sgd.config import load_config
    from bayes_sgd.experiment import run_experiment

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by all workers of this session
    key = hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:10]
    out, lock = root / f"tiny-{key}", root / f"tiny-{key}.lock"

    def complete():
        m = out / "manifest.json"
        return m.exists() and json.loads(m.read_text()).get("status") == "complete"

    try:
        os.mkdir(lock)
    except FileExistsError:  # another worker builds it
        deadline = time.monotonic() + 900
        while not complete():
            if time.monotonic() > deadline or (lock / "failed").exists():
                pytest.fail("the shared tiny results folder was not built")
            time.sleep(0.5)
        return out
    try:
        run_experiment(load_config(None, list(overrides)), out, show_progress=False)
    except BaseException:
        (lock / "failed").write_text("x")
        raise
    return out


@pytest.fixture(scope="session")
def kernel_name():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # install this interpreter's kernelspec into the environment itself
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix)
        KernelSpecManager().get_kernel_spec("python3")
    return "python3"


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    src = shared_tiny_results(tmp_path_factory)
    base = tmp_path_factory.mktemp("nb")
    shutil.copytree(src, base / "tiny")
    grid = base / "grid"  # a figure folder: a shared "bayes" run and two runs
    for name in ("bayes", "a", "b"):
        shutil.copytree(src, grid / name)
    return base


# Notebooks that read a folder of runs (a figure folder) rather than one results folder.
FOLDER_OF_RUNS = {"runs_grid", "claims"}


def _params_for(nb_path: Path, base: Path) -> str:
    return str(base / ("grid" if nb_path.stem in FOLDER_OF_RUNS else "tiny"))


def inject(nb, value: str):
    """Papermill-style: a cell after the one tagged ``parameters`` overrides RESULTS."""
    idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert idx, "notebook has no cell tagged 'parameters'"
    assert "RESULTS =" in nb.cells[idx[0]].source
    cell = nbformat.v4.new_code_cell(f"RESULTS = {value!r}")
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx[0] + 1, cell)
    return nb


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"sgd_vs_bayes", "simplicity_bias", "runs_grid"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws(path, tiny_results, kernel_name):
    nb = inject(jupytext.read(path), _params_for(path, tiny_results))
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=300,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError with the traceback if a cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} produced no image"
