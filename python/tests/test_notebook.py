"""The example notebook (examples/notebooks/routing.ipynb) runs top to bottom against the
installed wheel, offline, and is committed without outputs."""

import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "notebooks" / "routing.ipynb"


def test_the_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                f"cell {i} of {NOTEBOOK.name} was committed with its outputs"
            )


def test_the_notebook_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{NOTEBOOK.name} ran in {seconds:.1f} s")
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    errors = [o for out in outputs.values() for o in out if o.get("output_type") == "error"]
    assert not errors, errors
    text = json.dumps([o for out in outputs.values() for o in out])
    # the run's table rendered as HTML, both plots drawn, the Python components ran and the
    # bad value was named
    assert "<caption>MMLU-Pro (six 7-9B models)" in text
    assert text.count("image/png") >= 2
    assert "py_nearest_subject" in text and "knn_vote" in text
    assert "[routers.bad]" in text and "names no [labelers.votes] table" in text
