"""Execute every notebook in notebooks/ headless in fast mode (MRCNN_NOTEBOOK_FAST=1); any cell error fails.

Each notebook runs from a temporary copy in a temporary working directory, so no outputs, logs or
checkpoints land in the repository. The notebooks share one log directory: train_shapes.ipynb runs first
and the later ones load its checkpoint instead of training their own (run alone, each trains its own).
"""

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.shared_paths import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = {
    "demo.ipynb",
    "train_shapes.ipynb",
    "inspect_data.ipynb",
    "inspect_model.ipynb",
    "inspect_weights.ipynb",
    "inspect_balloon_data.ipynb",
}
# train_shapes first: the notebooks after it reuse its checkpoint from the shared log directory.
NOTEBOOKS = sorted(
    (p.name for p in NOTEBOOK_DIR.glob("*.ipynb")), key=lambda name: (name != "train_shapes.ipynb", name)
)
BALLOON_DIR = DATA_DIR / "balloon"


@pytest.fixture(scope="module")
def shared_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook_logs")


def execute(name, tmp_path, monkeypatch, logs, balloon_dir):
    """Run notebooks/<name> in fast mode from a copy in tmp_path; returns the executed notebook."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MRCNN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MRCNN_NOTEBOOK_LOGS", str(logs))
    monkeypatch.setenv("MRCNN_BALLOON_DIR", str(balloon_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("MRCNN_WEIGHTS", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the kernel's temporary files stay under tmp_path
    work = tmp_path / "work"
    work.mkdir()
    copy = shutil.copy(NOTEBOOK_DIR / name, work / name)
    notebook = nbformat.read(copy, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()  # raises CellExecutionError
    return notebook


def outputs(notebook, kind):
    """All stdout text, or the number of PNG images, in the executed notebook."""
    items = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    if kind == "png":
        return sum("image/png" in o.get("data", {}) for o in items)
    return "".join(o.get("text", "") for o in items if o.get("name") == "stdout")


def test_all_notebooks_present():
    assert set(NOTEBOOKS) == EXPECTED


def test_committed_notebooks_are_small_and_carry_outputs():
    for name in NOTEBOOKS:
        path = NOTEBOOK_DIR / name
        assert path.stat().st_size < 2_000_000, f"{name} is {path.stat().st_size} bytes"
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert outputs(notebook, "png") > 0, f"{name} was committed without its figures"
        errors = [
            o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
        ]
        assert not errors, f"{name} was committed with an error output"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch, shared_logs):
    notebook = execute(name, tmp_path, monkeypatch, shared_logs, BALLOON_DIR)
    text = outputs(notebook, "stdout")
    assert "Fast mode: True" in text
    assert outputs(notebook, "png") >= 1
    assert list((tmp_path / "work").iterdir()) == [tmp_path / "work" / name]  # nothing written beside it
    if name == "train_shapes.ipynb":
        assert list(shared_logs.glob("shapes*/mask_rcnn_shapes_0002.h5")), "no checkpoint of epoch 2"
        assert "mAP@0.5 = " in text
    if name == "inspect_balloon_data.ipynb":
        if (BALLOON_DIR / "train" / "via_region_data.json").is_file():
            assert "train: 61 images" in text and "val  : 13 images" in text
        else:
            assert "synthetic stand-in" in text


def test_balloon_notebook_falls_back_to_synthetic_data(tmp_path, monkeypatch, shared_logs):
    notebook = execute(
        "inspect_balloon_data.ipynb", tmp_path, monkeypatch, shared_logs, tmp_path / "no_balloon_data_here"
    )
    text = outputs(notebook, "stdout")
    assert "No balloon dataset at" in text and "Using the synthetic stand-in" in text
    assert "train: 12 images" in text and "val  : 4 images" in text
