"""Every tutorial in docs/tutorials runs clean in a fresh Jupyter kernel on its small settings
(``CNNZOO_TUTORIAL_SMALL=1``: generated data, a few seconds each)."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.ipynb"))


def test_there_is_one_tutorial_per_course_topic():
    assert len(TUTORIALS) == 7


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_clean_on_small_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNZOO_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNZOO_TUTORIAL_OUT", str(tmp_path / "out"))  # its checkpoints, removed with tmp_path
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    # Raises CellExecutionError, naming the cell and its traceback, on any error.
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
