"""Every analysis/*.py notebook (jupytext percent format) runs on a small real results folder
and draws at least one figure."""
from __future__ import annotations

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
from conftest import shared_tiny_results  # noqa: E402  (shared helper)


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
